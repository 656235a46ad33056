"""Claude Code's own Bash sandbox: asked for only for agents allowed Bash, and only where a
trial bwrap starts (the real bwrap, here as root and inside a capless sandbox)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.bash_sandbox import SETTINGS, allows_bash, availability, settings_args

REPO = Path(__file__).resolve().parents[2]


def _bin(tmp: Path, *tools: str) -> str:
    """A PATH holding only `tools` (socat stands in as `true`: only its presence counts)."""
    tmp.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which("true" if tool == "socat" else tool)
        assert real is not None
        (tmp / tool).symlink_to(real)
    return str(tmp)


def test_only_an_agent_allowed_bash_asks_for_it() -> None:
    assert allows_bash(["Bash"]) and allows_bash(["Read", "Bash(git log:*)"])
    assert not allows_bash([]) and not allows_bash(["Read", "BashOutput", "mcp__hive__send"])
    assert settings_args(["Read"], "/nonexistent") == []


def test_without_socat_or_bwrap_claudes_sandbox_is_not_asked_for(tmp_path: Path) -> None:
    assert availability(_bin(tmp_path / "a", "bwrap")) == "socat is not installed"
    assert availability(_bin(tmp_path / "b", "socat")) == "bubblewrap (bwrap) is not installed"
    assert settings_args(["Bash"], str(tmp_path / "a")) == []


def test_where_a_trial_bwrap_starts_it_is_asked_for_strictly(tmp_path: Path) -> None:
    path = _bin(tmp_path, "bwrap", "socat")
    assert availability(path) is None  # root with its capabilities, as outside a sandbox
    flag, value = settings_args(["Bash"], path)
    assert flag == "--settings" and json.loads(value) == SETTINGS
    assert SETTINGS["sandbox"] == {
        "enabled": True,
        "failIfUnavailable": True,
        "allowUnsandboxedCommands": False,
    }


def test_inside_a_capless_sandbox_the_trial_fails_and_bash_runs_in_the_agents(
    tmp_path: Path,
) -> None:
    path = _bin(tmp_path / "bin", "bwrap", "socat")
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r});"
        "from harness.bash_sandbox import availability;"
        f"print(availability({path!r}))"
    )
    argv = ["bwrap", "--cap-drop", "ALL", "--unshare-pid", "--ro-bind", "/", "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--", sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=dict(os.environ))
    assert done.stdout.startswith("a trial bwrap failed: "), done.stdout
