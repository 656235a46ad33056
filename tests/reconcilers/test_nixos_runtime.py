"""The nixos runtime against the recording `nixos-container` stand-in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gitstore.spec import MANAGER, AgentSpec, role_for
from reconcilers.nixos import HARNESS_UNIT, NixosRuntime, container_name
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState
from tests.fakes.nixos import FakeNixos


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake(tmp_path: Path) -> FakeNixos:
    return FakeNixos(tmp_path / "fake")


@pytest.fixture
def runtime(tmp_path: Path, fake: FakeNixos) -> NixosRuntime:
    return make_runtime(tmp_path, fake)


def make_runtime(tmp_path: Path, fake: FakeNixos, **kwargs: float) -> NixosRuntime:
    return NixosRuntime(
        tmp_path / "state",
        tmp_path / "run",
        hyperhive_flake="path:/nix/store/hyperhive-src",
        nixpkgs_flake="path:/nix/store/nixpkgs-src",
        env=fake.env,
        conf_dir=fake.conf_dir,
        poll_interval=kwargs.get("poll_interval", 0.01),
        command_timeout=kwargs.get("command_timeout", 30.0),
        system="x86_64-linux",
    )


def build(name: str, rev: str = "rev1", harness: str = "0.1.0", **files: bytes) -> AgentBuild:
    return AgentBuild(
        name=name,
        role=role_for(name),
        rev=rev,
        spec=AgentSpec(description="test agent", model="claude-sonnet-4-5"),
        harness_version=harness,
        files={key.replace("_", "."): value for key, value in files.items()},
    )


@pytest.fixture(autouse=True)
def _no_stray_fault(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("HIVE_FAKE_NIXOS_FAIL", raising=False)
    monkeypatch.delenv("HIVE_FAKE_NIXOS_HANG", raising=False)
    yield


@pytest.mark.anyio
async def test_create_builds_the_agent_flake_and_leaves_the_container_stopped(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build("alpha"))

    flake = runtime.flake_dir("alpha")
    assert fake.calls() == [["create", "h-alpha", "--flake", f"path:{flake}#container"]]
    assert "hyperhive.nixosModules.harness-base" in (flake / "flake.nix").read_text()
    observed = await runtime.observe("alpha")
    assert observed.state is ContainerState.STOPPED
    assert (observed.rev, observed.harness_version) == ("rev1", "0.1.0")


@pytest.mark.anyio
async def test_create_binds_socket_credentials_and_notes_on_the_host_network(
    runtime: NixosRuntime, fake: FakeNixos, tmp_path: Path
) -> None:
    await runtime.create(build("alpha"))

    conf = fake.conf("h-alpha")
    state, run = tmp_path / "state", tmp_path / "run"
    assert conf["EXTRA_NSPAWN_FLAGS"] == (
        f'"--bind={run}/agents/alpha:/run/hive'
        f" --bind={state}/agents/alpha/claude:/root/.claude"
        f" --bind={state}/agents/alpha/state:/state"
        f" --bind={state}/agents/alpha/page:/run/hive-page"
        f' --bind-ro={state}/agents/alpha/key:/run/hive-key"'
    )
    assert (conf["PRIVATE_NETWORK"], conf["HOST_ADDRESS"], conf["LOCAL_ADDRESS"]) == ("0", "", "")
    assert conf["FLAKE"] == f"path:{runtime.flake_dir('alpha')}"
    for host in (
        run / "agents/alpha",
        state / "agents/alpha/claude",
        state / "agents/alpha/state",
        state / "agents/alpha/page",
    ):
        assert host.is_dir()
        assert host.stat().st_mode & 0o777 == 0o700


@pytest.mark.anyio
async def test_the_manager_also_gets_its_agents_clone_and_the_proposed_repo(
    runtime: NixosRuntime, fake: FakeNixos, tmp_path: Path
) -> None:
    await runtime.create(build(MANAGER))

    flags = fake.conf("hm1nd")["EXTRA_NSPAWN_FLAGS"].strip('"').split()
    state = tmp_path / "state"
    assert flags == [
        f"--bind={tmp_path}/run/manager:/run/hive",
        f"--bind={state}/agents/hm1nd/claude:/root/.claude",
        f"--bind={state}/agents/hm1nd/state:/state",
        f"--bind={state}/agents/hm1nd/page:/run/hive-page",
        f"--bind={state}/agents/hm1nd/agents:/agents",
        f"--bind={state}/proposed.git:{state}/proposed.git",
        f"--bind-ro={state}/agents/hm1nd/key:/run/hive-key",
        # What git runs on the operator's next local push stays the operator's.
        f"--bind-ro={state}/proposed.git/hooks:{state}/proposed.git/hooks",
        f"--bind-ro={state}/proposed.git/config:{state}/proposed.git/config",
    ]
    assert fake.actions() == [("create", "hm1nd")]


@pytest.mark.anyio
async def test_lifecycle_runs_create_start_update_stop_destroy_in_order(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build("alpha"))
    await runtime.start("alpha")
    assert (await runtime.observe("alpha")).state is ContainerState.RUNNING

    await runtime.update(build("alpha", rev="rev2", harness="0.2.0"))
    observed = await runtime.observe("alpha")
    assert (observed.state, observed.rev, observed.harness_version) == (
        ContainerState.RUNNING,
        "rev2",
        "0.2.0",
    )

    await runtime.stop("alpha")
    assert (await runtime.observe("alpha")).state is ContainerState.STOPPED

    await runtime.destroy("alpha")
    assert (await runtime.observe("alpha")).state is ContainerState.MISSING
    assert not runtime.flake_dir("alpha").exists()
    assert [a for a in fake.actions() if a[0] != "status"] == [
        ("create", "h-alpha"),
        ("start", "h-alpha"),
        ("update", "h-alpha"),
        ("stop", "h-alpha"),
        ("destroy", "h-alpha"),
    ]
    assert [argv for argv in fake.calls() if argv[0] == "update"] == [
        [
            "update",
            "h-alpha",
            "--flake",
            f"path:{runtime.flake_dir('alpha')}#container",
        ]
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["alpha", MANAGER])
async def test_a_container_binds_only_its_own_dirs_never_the_host_socket_or_applied(
    runtime: NixosRuntime, fake: FakeNixos, tmp_path: Path, name: str
) -> None:
    await runtime.create(build("alpha"))
    await runtime.create(build(MANAGER))
    await runtime.start(name)
    cname = "hm1nd" if name == MANAGER else f"h-{name}"
    flags = fake.conf(cname)["EXTRA_NSPAWN_FLAGS"].strip('"').split()
    state, run = tmp_path / "state", tmp_path / "run"
    own = [str(state / "agents" / name), str(runtime.socket_dir(name))]
    if name == MANAGER:
        own.append(str(state / "proposed.git"))  # pushes go there; applied.git never
    for flag in flags:
        assert flag.startswith(("--bind=", "--bind-ro=")), flag
        host = flag.split("=", 1)[1].split(":", 1)[0]
        assert any(host == o or host.startswith(o + "/") for o in own), flag
        assert "applied" not in host and not host.endswith("host.sock")
        assert host not in (str(state), str(run), str(run / "agents"))
    # The harness's key: read-only inside, minted at start, 0600 on the host.
    assert f"--bind-ro={state}/agents/{name}/key:/run/hive-key" in flags
    key = runtime.layout.harness_key(name)
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text()) == 64


@pytest.mark.anyio
async def test_an_unknown_agent_is_observed_missing(runtime: NixosRuntime) -> None:
    observed = await runtime.observe("ghost")

    assert observed.state is ContainerState.MISSING
    assert observed.rev is None


@pytest.mark.anyio
async def test_destroying_an_unknown_agent_succeeds_like_the_real_tool(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.destroy("ghost")

    assert fake.actions() == [("destroy", "h-ghost")]


@pytest.mark.anyio
async def test_agent_nix_and_prompt_join_the_flake_and_leave_it_when_removed(
    runtime: NixosRuntime,
) -> None:
    await runtime.create(build("alpha", agent_nix=b"{ ... }: { }\n", prompt_md=b"Be brief.\n"))
    flake = runtime.flake_dir("alpha")
    text = (flake / "flake.nix").read_text()
    assert "./agent.nix" in text and "prompt = ./prompt.md;" in text
    assert (flake / "prompt.md").read_bytes() == b"Be brief.\n"

    (flake / "flake.lock").write_text("{}")
    await runtime.update(build("alpha", rev="rev2"))

    text = (flake / "flake.nix").read_text()
    assert "./agent.nix" not in text and "prompt = null;" in text
    assert not (flake / "agent.nix").exists()
    assert not (flake / "prompt.md").exists()
    assert not (flake / "flake.lock").exists(), "a stale lock would pin the old harness"


@pytest.mark.anyio
async def test_a_container_down_without_being_stopped_is_crashed_and_reported_by_exits(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    for name in ("alpha", "beta"):
        await runtime.create(build(name))
        await runtime.start(name)

    with anyio.fail_after(10):
        async with contextlib.aclosing(runtime.exits()) as exits:
            await runtime.stop("beta")
            fake.crash("h-alpha")
            assert await anext(exits) == "alpha"

    observed = await runtime.observe("alpha")
    assert observed.state is ContainerState.CRASHED
    assert "without being stopped" in observed.message
    assert (await runtime.observe("beta")).state is ContainerState.STOPPED


@pytest.mark.anyio
async def test_a_crash_is_reported_once_and_again_after_a_restart(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build("alpha"))
    await runtime.start("alpha")

    with anyio.fail_after(10):
        async with contextlib.aclosing(runtime.exits()) as exits:
            fake.crash("h-alpha")
            assert await anext(exits) == "alpha"
            await runtime.start("alpha")
            # Let a few polls see it running before it crashes again.
            await anyio.sleep(runtime.poll_interval * 5)
            fake.crash("h-alpha")
            assert await anext(exits) == "alpha"


@pytest.mark.anyio
async def test_a_failing_command_raises_container_error_with_its_command_and_stderr(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build("alpha"))
    fake.extra_env["HIVE_FAKE_NIXOS_FAIL"] = "start"
    failing = make_runtime(runtime.state_dir.parent, fake)

    with pytest.raises(ContainerError) as info:
        await failing.start("alpha")

    message = str(info.value)
    assert "nixos-container start h-alpha failed" in message
    assert "failed to start container" in message
    assert (await failing.observe("alpha")).state is ContainerState.STOPPED


@pytest.mark.anyio
async def test_a_failed_build_leaves_no_container_behind(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    fake.extra_env["HIVE_FAKE_NIXOS_FAIL"] = "create"
    failing = make_runtime(runtime.state_dir.parent, fake)

    with pytest.raises(ContainerError, match="failed to build container from flake"):
        await failing.create(build("alpha"))

    assert (await failing.observe("alpha")).state is ContainerState.MISSING


@pytest.mark.anyio
async def test_creating_a_container_twice_fails_like_the_real_tool(
    runtime: NixosRuntime,
) -> None:
    await runtime.create(build("alpha"))

    with pytest.raises(ContainerError, match="container \u2018h-alpha\u2019 already exists"):
        await runtime.create(build("alpha"))


@pytest.mark.anyio
async def test_a_command_that_hangs_past_the_timeout_raises_container_error(
    tmp_path: Path, fake: FakeNixos
) -> None:
    fake.extra_env["HIVE_FAKE_NIXOS_HANG"] = "status"
    runtime = make_runtime(tmp_path, fake, command_timeout=0.5)

    with pytest.raises(ContainerError, match=r"did not finish within 0\.5s"):
        await runtime.observe("alpha")


@pytest.mark.anyio
async def test_a_name_too_long_for_nixos_container_is_refused_with_advice_to_rename(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    assert container_name("ninechars") == "h-ninechars"

    with pytest.raises(ContainerError, match="rename the agent to at most 9 characters"):
        await runtime.create(build("tenletters"))

    assert fake.calls() == []
    assert not runtime.flake_dir("tenletters").exists()


@pytest.mark.anyio
async def test_names_lists_only_containers_hyperhive_built(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build(MANAGER))
    await runtime.create(build("alpha"))
    fake.add_foreign("web")
    fake.add_foreign("h-theirs")

    assert await runtime.names() == ["alpha", MANAGER]


@pytest.mark.anyio
async def test_logs_read_the_harness_unit_from_the_container_journal(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    await runtime.create(build("alpha"))
    await runtime.start("alpha")
    fake.write_journal("h-alpha", HARNESS_UNIT, [f"line {i}" for i in range(5)])

    assert await runtime.logs("alpha", lines=2) == ["line 3", "line 4"]
    assert fake.calls()[-1] == [
        "journalctl",
        "-M",
        "h-alpha",
        "-u",
        "hive-agent",
        "-n",
        "2",
        "--no-pager",
        "-o",
        "cat",
    ]


@pytest.mark.anyio
async def test_start_recreates_the_socket_dir_a_reboot_emptied(
    runtime: NixosRuntime, tmp_path: Path
) -> None:
    await runtime.create(build("alpha"))
    socket_dir = runtime.socket_dir("alpha")
    socket_dir.rmdir()

    await runtime.start("alpha")

    assert socket_dir == tmp_path / "run" / "agents" / "alpha"
    assert socket_dir.is_dir()


@pytest.mark.anyio
async def test_concurrent_builds_of_different_agents_run_in_their_own_directories(
    runtime: NixosRuntime, fake: FakeNixos
) -> None:
    async with anyio.create_task_group() as tg:
        for name in ("alpha", "beta", "gamma"):
            tg.start_soon(runtime.create, build(name))

    assert sorted(fake.cwds()) == sorted(
        str(runtime.agent_dir(name)) for name in ("alpha", "beta", "gamma")
    )
    assert await runtime.names() == ["alpha", "beta", "gamma"]
