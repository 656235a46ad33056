"""The Nix side, checked offline with Debian's nix: every file parses, and the parts that
carry our contract (the generated flake, the container base, the host module, the
flake's outputs) are evaluated against small stand-ins for nixpkgs' `lib` and `pkgs`.

The stand-in `lib` implements only what our modules call, with the real semantics for
values (`mkIf` on a false condition gives nothing, `mkOption` keeps its default); a
module that starts using another `lib` function fails here loudly, which is the point.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitstore.spec import MANAGER, AgentSpec, role_for
from reconcilers.nixflake import render_flake
from reconcilers.runtime import AgentBuild

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("nix-instantiate") is None, reason="nix-instantiate is not installed"
)

STUB_LIB = """
rec {
  mkOption = args: args // { _type = "option"; };
  mkEnableOption = description: { _type = "option"; default = false; inherit description; };
  mkIf = cond: content: if cond then content else { };
  mkDefault = x: x;
  optional = cond: x: if cond then [ x ] else [ ];
  optionalAttrs = cond: attrs: if cond then attrs else { };
  inherit (builtins) concatStringsSep;
  getName = pkg: pkg.pname;
  literalExpression = text: { _type = "literalExpression"; inherit text; };
  genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  types = {
    package = "package"; str = "str"; path = "path"; port = "port"; bool = "bool";
    nullOr = t: "nullOr ${t}"; enum = values: "enum"; strMatching = re: "strMatching ${re}";
  };
}
"""

STUB_PKGS = """
{
  claude-code = "/nix/store/claude-code";
  git = "/nix/store/git";
  nixos-container = "/nix/store/nixos-container";
  path = "/nix/store/nixpkgs-src";
}
"""

# The defaults a module declares, as the module system would give them in `config`.
DEFAULTS_OF = """
let defaultsOf = opts:
  if opts ? _type then opts.default or null else builtins.mapAttrs (_: defaultsOf) opts;
in defaultsOf
"""


def nix_eval(expr: str) -> Any:
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def nix_parse(path: Path) -> None:
    result = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def repo_nix_files() -> list[Path]:
    return sorted(
        path
        for path in REPO.rglob("*.nix")
        if not ({".git", "result", "node_modules"} & set(path.relative_to(REPO).parts))
    )


def make_build(name: str, model: str | None = "claude-sonnet-4-5") -> AgentBuild:
    return AgentBuild(
        name=name,
        role=role_for(name),
        rev="4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        spec=AgentSpec(model=model),
        harness_version="0.1.0",
    )


def write_flake(
    tmp_path: Path, build: AgentBuild, *, agent_nix: bool = True, prompt: bool = True
) -> Path:
    flake = tmp_path / build.name / "flake.nix"
    flake.parent.mkdir(parents=True)
    flake.write_text(
        render_flake(
            build,
            hyperhive_flake="path:/nix/store/hyperhive-src",
            nixpkgs_flake="path:/nix/store/nixpkgs-src",
            system="x86_64-linux",
            has_agent_nix=agent_nix,
            has_prompt=prompt,
        )
    )
    return flake


def eval_flake(flake: Path) -> Any:
    """The flake's inputs and its container's module list, with stand-in inputs."""
    return nix_eval(f"""
      let
        flake = import {flake};
        outputs = flake.outputs {{
          self = outputs;
          nixpkgs = {{ lib.nixosSystem = args: args; }};
          hyperhive = {{ nixosModules.harness-base = "harness-base"; }};
        }};
        show = m:
          if builtins.isPath m then "path:" + baseNameOf m
          else if builtins.isString m then m
          else m // {{ hyperhive.agent = m.hyperhive.agent // {{
            prompt = if m.hyperhive.agent.prompt == null then null
                     else baseNameOf m.hyperhive.agent.prompt; }}; }};
        system = outputs.nixosConfigurations.container;
      in {{
        inherit (flake) inputs description;
        outputs = builtins.attrNames outputs;
        args = builtins.attrNames system;
        modules = map show system.modules;
      }}
    """)


@pytest.mark.parametrize("path", repo_nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_nix_file_in_the_repo_parses(path: Path) -> None:
    nix_parse(path)


def test_the_repo_has_the_flake_and_its_modules() -> None:
    names = {str(path.relative_to(REPO)) for path in repo_nix_files()}

    assert {"flake.nix", "nixos/hive-c0re.nix", "nixos/harness-base.nix"} <= names


@pytest.mark.parametrize("name", [MANAGER, "alpha"])
def test_a_generated_agent_flake_parses(tmp_path: Path, name: str) -> None:
    nix_parse(write_flake(tmp_path, make_build(name)))


def test_the_generated_flake_builds_harness_base_and_agent_nix_for_its_agent(
    tmp_path: Path,
) -> None:
    result = eval_flake(write_flake(tmp_path, make_build("alpha")))

    assert result["inputs"] == {
        "nixpkgs": {"url": "path:/nix/store/nixpkgs-src"},
        "hyperhive": {
            "url": "path:/nix/store/hyperhive-src",
            "inputs": {"nixpkgs": {"follows": "nixpkgs"}},
        },
    }
    assert result["outputs"] == ["nixosConfigurations"]
    assert result["args"] == ["modules"]
    harness, agent, agent_nix = result["modules"]
    assert harness == "harness-base"
    assert agent_nix == "path:agent.nix"
    assert agent == {
        "nixpkgs": {"hostPlatform": "x86_64-linux"},
        "hyperhive": {
            "agent": {
                "name": "alpha",
                "role": "agent",
                "model": "claude-sonnet-4-5",
                "rev": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                "harnessVersion": "0.1.0",
                "prompt": "prompt.md",
            }
        },
    }


def test_a_flake_without_agent_nix_or_prompt_has_only_the_base_and_the_agent(
    tmp_path: Path,
) -> None:
    build = make_build(MANAGER, model=None)
    result = eval_flake(write_flake(tmp_path, build, agent_nix=False, prompt=False))

    assert len(result["modules"]) == 2
    agent = result["modules"][1]["hyperhive"]["agent"]
    assert (agent["role"], agent["model"], agent["prompt"]) == ("manager", None, None)
    assert "port" not in agent


def test_values_from_the_applied_tree_cannot_inject_nix_code(tmp_path: Path) -> None:
    hostile = 'x" + builtins.abort "injected" + "${builtins.abort "interpolated"}\\\n'
    result = eval_flake(write_flake(tmp_path, make_build("alpha", model=hostile)))

    assert result["modules"][1]["hyperhive"]["agent"]["model"] == hostile


def eval_harness_base(name: str, model: str | None, prompt: str | None) -> Any:
    model_nix = "null" if model is None else json.dumps(model)
    prompt_nix = "null" if prompt is None else json.dumps(prompt)
    return nix_eval(f"""
      let
        lib = {STUB_LIB};
        pkgs = {STUB_PKGS};
        defaultsOf = {DEFAULTS_OF};
        module = import {REPO}/nixos/harness-base.nix {{ inherit config lib pkgs; }};
        defaults = defaultsOf module.options.hyperhive;
        config.hyperhive = defaults // {{
          package = "/nix/store/hyperhive";
          agent = defaults.agent // {{
            name = "{name}"; role = "{role_for(name)}";
            model = {model_nix}; prompt = {prompt_nix}; rev = "r1"; harnessVersion = "0.1.0";
          }};
        }};
        c = module.config;
        unit = c.systemd.services.hive-agent;
        allow = c.nixpkgs.config.allowUnfreePredicate;
      in {{
        inherit (unit) environment restartTriggers wantedBy;
        inherit (unit.serviceConfig) ExecStart Restart;
        etc = builtins.attrNames c.environment.etc;
        isContainer = c.boot.isContainer;
        hostName = c.networking.hostName;
        ports = c.networking.firewall.allowedTCPPorts or [ ];
        unfree = map (pname: allow {{ inherit pname; }}) [ "claude-code" "vscode" "slack" ];
      }}
    """)


def test_harness_base_runs_hive_ag3nt_with_the_contract_environment() -> None:
    result = eval_harness_base("alpha", model=None, prompt=None)

    assert result["ExecStart"] == "/nix/store/hyperhive/bin/hive-ag3nt serve"
    assert result["environment"] == {
        "HIVE_AGENT": "alpha",
        "HIVE_SOCKET": "/run/hive/mcp.sock",
        "HIVE_STATE": "/state",
        "HIVE_WEB_SOCKET": "/run/hive-page/page.sock",
        "CLAUDE_CONFIG_DIR": "/root/.claude",
        "HIVE_CLAUDE_BIN": "/nix/store/claude-code/bin/claude",
        "HIVE_KEY_FILE": "/run/hive-key/harness.key",
        "HIVE_CLAUDE_SANDBOX": "bwrap",
        "HOME": "/root",
    }
    assert result["hostName"] == "h-alpha"
    assert result["isContainer"] is True
    assert result["ports"] == []  # the page is a unix socket: no TCP port
    assert result["wantedBy"] == ["multi-user.target"]
    assert result["etc"] == []


def test_harness_base_runs_hive_m1nd_for_the_manager_with_its_agents_dir() -> None:
    result = eval_harness_base(MANAGER, model="claude-opus-4-1", prompt="/nix/store/p.md")

    assert result["ExecStart"] == "/nix/store/hyperhive/bin/hive-m1nd serve"
    env = result["environment"]
    assert env["HIVE_AGENTS_DIR"] == "/agents"
    assert env["HIVE_WEB_SOCKET"] == "/run/hive-page/page.sock"
    assert env["HIVE_MODEL"] == "claude-opus-4-1"
    assert env["HIVE_PROMPT_FILE"] == "/etc/hyperhive/prompt.md"
    assert result["etc"] == ["hyperhive/prompt.md"]
    assert result["restartTriggers"] == ["r1", "0.1.0", "claude-opus-4-1", "/nix/store/p.md"]


def test_harness_base_allows_claude_code_and_no_other_unfree_package() -> None:
    result = eval_harness_base("alpha", model=None, prompt=None)

    assert result["unfree"] == [True, False, False]


def eval_host_module(overrides: str = "{ }") -> Any:
    return nix_eval(f"""
      let
        lib = {STUB_LIB};
        pkgs = {STUB_PKGS};
        defaultsOf = {DEFAULTS_OF};
        module = import {REPO}/nixos/hive-c0re.nix {{ inherit config lib pkgs; }};
        cfg = defaultsOf module.options.services.hive-c0re // {{
          enable = true;
          package = "/nix/store/hyperhive";
          hyperhiveFlake = "path:/nix/store/hyperhive-src";
        }} // {overrides};
        config = {{
          services.hive-c0re = cfg;
          nix.package = "/nix/store/nix";
          systemd.package = "/nix/store/systemd";
        }};
        c = module.config;
        unit = c.systemd.services.hive-c0re;
      in {{
        inherit (unit) environment path wantedBy;
        inherit (unit.serviceConfig) ExecStart EnvironmentFile;
        tmpfiles = c.systemd.tmpfiles.rules;
        containers = c.boot.enableContainers;
        features = c.nix.settings.experimental-features;
        firewall = c.networking.firewall.allowedTCPPorts;
        packages = c.environment.systemPackages;
      }}
    """)


def test_the_host_module_runs_hive_c0re_with_the_nixos_runtime_and_private_dirs() -> None:
    result = eval_host_module()

    assert result["ExecStart"] == (
        "/nix/store/hyperhive/bin/hive-c0re serve --runtime nixos"
        " --state-dir /var/lib/hyperhive --runtime-dir /run/hyperhive"
        " --dashboard 127.0.0.1:7000"
    )
    assert result["environment"] == {
        "HIVE_HYPERHIVE_FLAKE": "path:/nix/store/hyperhive-src",
        "HIVE_NIXPKGS_FLAKE": "path:/nix/store/nixpkgs-src",
    }
    assert result["tmpfiles"] == [
        "d /var/lib/hyperhive 0700 root root - -",
        "d /run/hyperhive 0700 root root - -",
    ]
    assert "/nix/store/nixos-container" in result["path"]
    assert "/nix/store/git" in result["path"]
    assert "/nix/store/nix" in result["path"]
    assert result["containers"] is True
    assert result["features"] == ["nix-command", "flakes"]
    assert result["packages"] == ["/nix/store/hyperhive"]
    assert (result["firewall"], result["EnvironmentFile"]) == ([], [])


def test_the_host_module_honours_dashboard_firewall_and_environment_file() -> None:
    result = eval_host_module("""{
      dashboard = { address = "0.0.0.0"; port = 7100; };
      openFirewall = true;
      environmentFile = "/run/secrets/hive.env";
      stateDir = "/srv/hive";
    }""")

    assert result["ExecStart"].endswith(
        "--state-dir /srv/hive --runtime-dir /run/hyperhive --dashboard 0.0.0.0:7100"
    )
    assert result["firewall"] == [7100]
    assert result["EnvironmentFile"] == ["/run/secrets/hive.env"]


def test_the_flake_exports_packages_modules_checks_and_a_dev_shell() -> None:
    result = nix_eval(f"""
      let
        flake = import {REPO}/flake.nix;
        outputs = flake.outputs {{
          self = outputs // {{ outPath = "/nix/store/hyperhive-src"; }};
          nixpkgs = {{ lib = {STUB_LIB}; legacyPackages = {{ }}; }};
        }};
        perSystem = attrs: builtins.mapAttrs (_: builtins.attrNames) attrs;
        hostModule = outputs.nixosModules.hive-c0re {{
          lib = {STUB_LIB};
          pkgs.stdenv.hostPlatform.system = "x86_64-linux";
        }};
      in {{
        nixpkgs = flake.inputs.nixpkgs.url;
        outputs = builtins.attrNames outputs;
        modules = builtins.attrNames outputs.nixosModules;
        packages = perSystem outputs.packages;
        checks = perSystem outputs.checks;
        devShells = perSystem outputs.devShells;
        hyperhiveFlake = hostModule.services.hive-c0re.hyperhiveFlake;
      }}
    """)

    assert result["nixpkgs"].startswith("github:NixOS/nixpkgs/")
    assert {"packages", "nixosModules", "devShells", "checks"} <= set(result["outputs"])
    assert result["modules"] == ["default", "harness-base", "hive-c0re"]
    systems = {"x86_64-linux", "aarch64-linux"}
    assert result["packages"] == {s: ["default", "hyperhive"] for s in systems}
    assert result["checks"] == {s: ["mypy", "nixos-vm", "pytest", "ruff"] for s in systems}
    assert result["devShells"] == {s: ["default"] for s in systems}
    assert result["hyperhiveFlake"] == "path:/nix/store/hyperhive-src"
