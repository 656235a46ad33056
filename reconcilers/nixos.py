"""The nixos runtime: every agent in its own imperative nixos-container.

Each agent gets a generated flake under `<state>/flakes/<name>/` (rendered by
`reconcilers.nixflake`) whose `nixosConfigurations.container` is hyperhive's
`harness-base` module configured for the agent plus the agent's own `agent.nix`. The
container is driven with the stock `nixos-container` tool: `create --flake`,
`update --flake`, `start`, `stop`, `destroy`, `status`, `list`.

Facts about the tool this module is built on (nixpkgs `nixos-container.pl`):

- `create` refuses names longer than 11 characters (the host-side veth is `ve-<name>`
  and interface names are capped), and names must match `[a-zA-Z0-9_-]+`. We map the
  manager to `hm1nd` and others to `h-<name>`, so agent names of 10+ characters cannot
  run here; we refuse them before touching anything, with a message that says to rename.
- `create` and `update` take `--flake ref#attr` but no bind-mount flags. Imperative
  containers read `/etc/nixos-containers/<name>.conf` as the unit's EnvironmentFile,
  and its `EXTRA_NSPAWN_FLAGS` is passed to systemd-nspawn unquoted. So after `create`
  we rewrite that file: our `--bind=` flags, and `PRIVATE_NETWORK=0` so the container
  shares the host's network (agents call the Anthropic API). The agent page listens on
  a unix socket in `/run/hive-page` (the host's `<state>/agents/<name>/page/`), which
  the dashboard proxies at `/agents/<name>/`; no agent has a TCP port.
- `create --flake` / `update --flake` build with `nix build -o .tmp` in the current
  directory (the script's `$systemPath` is unset there), so two builds from one
  directory race on that link: each agent's build runs in its own directory.
- `status` prints `up` / `down`, or `gone` and exits non-zero for an unknown container;
  `destroy` of an unknown container succeeds; `update` of a running container reloads
  it (`switch-to-configuration test` inside), which restarts changed units.

`observe` combines `status` with two files we keep beside the flake: `rev.json` (the
rev and harness version last built) and `stopped` (written before we stop or create a
container, removed after we start it). A container that is down without that marker
went down unasked: it is CRASHED, and `exits()` reports it. `exits()` polls; a watcher
on machined's D-Bus signals (`machinectl`/`busctl monitor org.freedesktop.machine1`)
would report faster and cheaper, at the cost of a D-Bus dependency.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path

import anyio

from gitstore.spec import MANAGER, NAME_RE, check_name
from reconcilers.layout import Layout
from reconcilers.nixflake import render_flake
from reconcilers.proc import mint_key
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed

__all__ = ["HARNESS_UNIT", "MAX_CONTAINER_NAME", "NixosRuntime", "container_name"]

log = logging.getLogger(__name__)

MAX_CONTAINER_NAME = 11
HARNESS_UNIT = "hive-agent"
_AGENT_PREFIX = "h-"
# Characters that would break EXTRA_NSPAWN_FLAGS: it is word-split by the unit's shell,
# `:` separates host from container path in --bind, and `"` ends the quoted value.
_UNSAFE_PATH_CHARS = frozenset(' \t\n:"\\$`')


def container_name(name: str) -> str:
    """The nixos-container name of an agent; raises `ContainerError` when it is too long."""
    check_name(name)
    cname = name if name == MANAGER else _AGENT_PREFIX + name
    if len(cname) > MAX_CONTAINER_NAME:
        raise ContainerError(
            f"agent name {name!r} is too long for the nixos runtime: its container "
            f"{cname!r} has {len(cname)} characters and nixos-container allows at most "
            f"{MAX_CONTAINER_NAME}; rename the agent to at most "
            f"{MAX_CONTAINER_NAME - len(_AGENT_PREFIX)} characters"
        )
    return cname


def _agent_name(cname: str) -> str | None:
    if cname == MANAGER:
        return MANAGER
    if cname.startswith(_AGENT_PREFIX) and len(cname) > len(_AGENT_PREFIX):
        return cname[len(_AGENT_PREFIX) :]
    return None


def _host_system() -> str:
    machine = platform.machine()
    return f"{'aarch64' if machine in ('arm64', 'aarch64') else machine}-linux"


class NixosRuntime:
    """Agents as nixos-containers built from per-agent flakes (needs root on NixOS)."""

    name = "nixos"
    sandbox = "nixos-container"

    def __init__(
        self,
        state_dir: Path,
        runtime_dir: Path,
        *,
        hyperhive_flake: str,
        nixpkgs_flake: str = "nixpkgs",
        command_timeout: float = 900.0,
        poll_interval: float = 2.0,
        env: Mapping[str, str] | None = None,
        conf_dir: Path = Path("/etc/nixos-containers"),
        system: str | None = None,
    ) -> None:
        for path in (state_dir, runtime_dir):
            if _UNSAFE_PATH_CHARS & set(str(path)):
                raise ValueError(
                    f"{path} cannot be bind-mounted by nixos-container: "
                    "it contains whitespace, ':', quotes or shell characters"
                )
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.layout = Layout(state_dir, runtime_dir)
        self.hyperhive_flake = hyperhive_flake
        self.nixpkgs_flake = nixpkgs_flake
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval
        self.conf_dir = conf_dir
        self.system = system or _host_system()
        self._env = {**os.environ, **(env or {})}
        # Crashes already yielded by exits(); start() forgets one, so the same agent
        # crashing again is reported again even if no poll saw it running in between.
        self._reported: set[str] = set()

    # -- layout (shared with the process runtime) ------------------------------------

    def flake_dir(self, name: str) -> Path:
        return self.state_dir / "flakes" / name

    def socket_dir(self, name: str) -> Path:
        return self.layout.socket_dir(name)

    def agent_dir(self, name: str) -> Path:
        return self.layout.agent_dir(name)

    def read_only_binds(self, name: str) -> list[tuple[Path, str]]:
        """Host path -> container path, bound read-only over the binds: the harness's key
        (its dir, so a new key renamed into place shows inside) and, for the manager, what
        git would run from `proposed.git` on the operator's next local push."""
        binds = [(self.layout.key_dir(name), "/run/hive-key")]
        if name == MANAGER:
            proposed = self.state_dir / "proposed.git"
            binds += [(proposed / part, str(proposed / part)) for part in ("hooks", "config")]
        return binds

    def binds(self, name: str) -> list[tuple[Path, str]]:
        """Host dir -> container path, for the agent's EXTRA_NSPAWN_FLAGS."""
        binds = [
            (self.socket_dir(name), "/run/hive"),
            (self.agent_dir(name) / "claude", "/root/.claude"),
            (self.agent_dir(name) / "state", "/state"),
            (self.layout.page_dir(name), "/run/hive-page"),
        ]
        if name == MANAGER:
            proposed = self.state_dir / "proposed.git"
            binds.append((self.agent_dir(name) / "agents", "/agents"))
            # The manager's clone pushes to the proposed repo by its host path, so the
            # repo is mounted at that same path inside: the clone's remote works as is.
            binds.append((proposed, str(proposed)))
        return binds

    # -- Runtime protocol -------------------------------------------------------------

    def name_problem(self, name: str) -> str | None:
        try:
            container_name(name)
        except ContainerError as exc:
            return str(exc)
        return None

    async def observe(self, name: str) -> Observed:
        cname = container_name(name)
        result = await self._run("nixos-container", "status", cname, check=False)
        status = result.stdout.decode(errors="replace").strip()
        if status == "gone":
            return Observed(name=name, state=ContainerState.MISSING)
        if result.returncode != 0 or status not in ("up", "down"):
            raise _error(["nixos-container", "status", cname], result)
        rev, harness = self._read_rev(name)
        if status == "up":
            return Observed(name, ContainerState.RUNNING, rev=rev, harness_version=harness)
        if (self.flake_dir(name) / "stopped").exists():
            return Observed(name, ContainerState.STOPPED, rev=rev, harness_version=harness)
        return Observed(
            name,
            ContainerState.CRASHED,
            rev=rev,
            harness_version=harness,
            message=f"container {cname} went down without being stopped",
        )

    async def names(self) -> list[str]:
        result = await self._run("nixos-container", "list")
        found = []
        for line in result.stdout.decode(errors="replace").splitlines():
            name = _agent_name(line.strip())
            # A container is ours only if we generated its flake: an operator's own
            # container that happens to be called h-something must never be destroyed.
            if name is not None and NAME_RE.fullmatch(name) and self.flake_dir(name).is_dir():
                found.append(name)
        return sorted(found)

    async def create(self, build: AgentBuild) -> None:
        cname = container_name(build.name)
        self._prepare(build)
        # Marked stopped before it exists, so no poll can mistake it for a crash.
        self._mark_stopped(build.name, True)
        await self._run(
            "nixos-container",
            "create",
            cname,
            "--flake",
            self._flake_ref(build),
            cwd=self.agent_dir(build.name),
        )
        self._write_conf(build.name)
        self._write_rev(build)

    async def update(self, build: AgentBuild) -> None:
        cname = container_name(build.name)
        self._prepare(build)
        self._write_conf(build.name)
        await self._run(
            "nixos-container",
            "update",
            cname,
            "--flake",
            self._flake_ref(build),
            cwd=self.agent_dir(build.name),
        )
        self._write_rev(build)

    async def start(self, name: str) -> None:
        cname = container_name(name)
        self._ensure_dirs(name)
        # The harness reads it from /run/hive-key/harness.key (HIVE_KEY_FILE).
        mint_key(self.layout.harness_key(name))
        self._write_conf(name)
        await self._run("nixos-container", "start", cname)
        self._mark_stopped(name, False)
        self._reported.discard(name)

    async def stop(self, name: str) -> None:
        cname = container_name(name)
        self._mark_stopped(name, True)
        await self._run("nixos-container", "stop", cname)

    async def destroy(self, name: str) -> None:
        cname = container_name(name)
        self._mark_stopped(name, True)
        await self._run("nixos-container", "destroy", cname)
        # Credentials and notes under <state>/agents/<name>/ are kept on purpose: they
        # are the agent's durable data, and an agent spawned again under the same name
        # finds them. Only what we generated goes.
        await anyio.to_thread.run_sync(shutil.rmtree, self.flake_dir(name), True)

    async def exits(self) -> AsyncGenerator[str, None]:
        while True:
            try:
                names = await self.names()
                crashed = set()
                for name in names:
                    if (await self.observe(name)).state is ContainerState.CRASHED:
                        crashed.add(name)
            except ContainerError as exc:
                # A failed poll is not an exit; the next poll (or resync) sees the truth.
                log.warning("polling nixos-containers failed: %s", exc)
            else:
                self._reported &= crashed
                for name in sorted(crashed - self._reported):
                    self._reported.add(name)
                    yield name
            await anyio.sleep(self.poll_interval)

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        cname = container_name(name)
        result = await self._run(
            "journalctl",
            "-M",
            cname,
            "-u",
            HARNESS_UNIT,
            "-n",
            str(lines),
            "--no-pager",
            "-o",
            "cat",
        )
        return result.stdout.decode(errors="replace").splitlines()

    # -- helpers ----------------------------------------------------------------------

    def _flake_ref(self, build: AgentBuild) -> str:
        # `path:` so nix copies the directory as is, even if the state dir ever ends up
        # inside a git work tree (a git flake would ignore our untracked files).
        return f"path:{self.flake_dir(build.name)}#container"

    def _prepare(self, build: AgentBuild) -> None:
        """Write the agent's flake and create the host dirs its container binds."""
        self._ensure_dirs(build.name)
        flake = self.flake_dir(build.name)
        flake.mkdir(parents=True, exist_ok=True, mode=0o700)
        for extra in ("agent.nix", "prompt.md"):
            target = flake / extra
            if extra in build.files:
                target.write_bytes(build.files[extra])
            else:
                target.unlink(missing_ok=True)
        (flake / "flake.nix").write_text(
            render_flake(
                build,
                hyperhive_flake=self.hyperhive_flake,
                nixpkgs_flake=self.nixpkgs_flake,
                system=self.system,
                has_agent_nix="agent.nix" in build.files,
                has_prompt="prompt.md" in build.files,
            )
        )
        # The lock pins the hyperhive source by hash; after a harness upgrade the flake
        # URL points at a new store path, so a kept lock would build the old harness.
        # Both inputs are local paths, so locking afresh costs nothing and is offline.
        (flake / "flake.lock").unlink(missing_ok=True)

    def _ensure_dirs(self, name: str) -> None:
        """Create the host side of the agent's binds; nspawn refuses to bind a missing path.

        Runs before every start too: the socket dirs live on /run, which a reboot empties.
        The proposed repo is the controller's to create, never ours.
        """
        proposed = self.state_dir / "proposed.git"
        for host, _ in self.binds(name) + self.read_only_binds(name):
            if host != proposed and proposed not in host.parents:
                host.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _write_conf(self, name: str) -> None:
        """Rewrite the tool's container conf with our binds and the host network."""
        conf = self.conf_dir / f"{container_name(name)}.conf"
        try:
            lines = conf.read_text().splitlines()
        except FileNotFoundError:
            return  # not created yet (or gone): the next create/start writes it
        ours = {
            "PRIVATE_NETWORK": "0",
            "HOST_ADDRESS": "",
            "LOCAL_ADDRESS": "",
            "EXTRA_NSPAWN_FLAGS": '"'
            + " ".join(
                [f"--bind={host}:{inside}" for host, inside in self.binds(name)]
                + [f"--bind-ro={host}:{inside}" for host, inside in self.read_only_binds(name)]
            )
            + '"',
        }
        kept = [line for line in lines if line.split("=", 1)[0] not in ours]
        text = "\n".join([*kept, *(f"{key}={value}" for key, value in ours.items())]) + "\n"
        tmp = conf.with_suffix(".conf.tmp")
        tmp.write_text(text)
        tmp.replace(conf)

    def _write_rev(self, build: AgentBuild) -> None:
        record = {"rev": build.rev, "harness_version": build.harness_version}
        (self.flake_dir(build.name) / "rev.json").write_text(json.dumps(record) + "\n")

    def _read_rev(self, name: str) -> tuple[str | None, str | None]:
        try:
            record = json.loads((self.flake_dir(name) / "rev.json").read_text())
        except (FileNotFoundError, ValueError):
            return None, None
        rev, harness = record.get("rev"), record.get("harness_version")
        return (
            rev if isinstance(rev, str) else None,
            harness if isinstance(harness, str) else None,
        )

    def _mark_stopped(self, name: str, stopped: bool) -> None:
        marker = self.flake_dir(name) / "stopped"
        if stopped:
            marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    async def _run(
        self, *argv: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        exe = shutil.which(argv[0], path=self._env.get("PATH"))
        if exe is None:
            raise ContainerError(f"{argv[0]} not found on PATH; the nixos runtime needs NixOS")
        try:
            with anyio.fail_after(self.command_timeout):
                result = await anyio.run_process(
                    [exe, *argv[1:]], check=False, env=self._env, cwd=cwd
                )
        except TimeoutError as exc:
            raise ContainerError(
                f"{shlex.join(argv)} did not finish within {self.command_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise ContainerError(f"{shlex.join(argv)} could not run: {exc}") from exc
        if check and result.returncode != 0:
            raise _error(list(argv), result)
        return result


def _error(argv: list[str], result: subprocess.CompletedProcess[bytes]) -> ContainerError:
    detail = (result.stderr or result.stdout).decode(errors="replace").strip()
    return ContainerError(
        f"{shlex.join(argv)} failed (exit {result.returncode}): {detail or 'no output'}"
    )
