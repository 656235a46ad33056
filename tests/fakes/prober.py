"""A stand-in harness that looks around from where an agent runs, then waits for SIGTERM.

It writes `HIVE_STATE/probe.json`: what it sees of the hive's paths (derived from its own
environment: the socket dir is `<runtime>/agents/<name>` or `<runtime>/manager`, notes are
`<state>/agents/<name>/state`), which sockets it can connect to, which processes `/proc`
shows, its capabilities, and where it can write. Only the standard library: it runs
with whatever Python the sandbox has.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

env = os.environ
notes = Path(env["HIVE_STATE"])
state = notes.parent.parent.parent
sock = Path(env["HIVE_SOCKET"])
# <runtime>/agents/<name>/mcp.sock, or <runtime>/manager/mcp.sock
runtime = sock.parent.parent.parent if sock.parent.parent.name == "agents" else sock.parent.parent


def connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def writable(path: Path) -> bool:
    probe = path / f".probe-{os.getpid()}-{time.time_ns()}"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


def opens_for_write(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError:
        return False
    return True


def listing(path: Path) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def cap_eff() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return line.split()[1]
    return ""


def exists(path: Path) -> bool:
    return os.path.lexists(path)


report = {
    "uid": os.getuid(),
    "pid": os.getpid(),
    "cap_eff": cap_eff(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "state_dir": listing(state),
    "runtime_dir": listing(runtime),
    "agents_dirs": listing(state / "agents"),
    "agent_sockets": listing(runtime / "agents"),
    "exists": {
        "host.sock": exists(runtime / "host.sock"),
        "manager socket": exists(runtime / "manager" / "mcp.sock"),
        "applied.git": exists(state / "applied.git"),
        "proposed.git": exists(state / "proposed.git"),
        "hive.sqlite": exists(state / "hive.sqlite"),
        "own key": exists(notes.parent / "key" / "harness.key"),
        "own log": exists(notes.parent / "harness.log"),
        "own socket": exists(sock),
    },
    "connects": {"own socket": connects(sock), "host.sock": connects(runtime / "host.sock")},
    "writable": {
        "notes": writable(notes),
        "claude": writable(Path(env["CLAUDE_CONFIG_DIR"])),
        "home": writable(Path(env["HOME"])),
        "tmp": writable(Path("/tmp")),
        "socket dir": writable(sock.parent),
        "usr": writable(Path("/usr")),
    },
    "key_fd": env.get("HIVE_KEY_FD", ""),
}
agents_clone = env.get("HIVE_AGENTS_DIR")
if agents_clone:
    proposed = state / "proposed.git"
    report["manager"] = {
        "clone": writable(Path(agents_clone)),
        "proposed refs": writable(proposed / "refs" / "heads"),
        "proposed objects": writable(proposed / "objects"),
        "proposed hooks": writable(proposed / "hooks"),
        "proposed config": opens_for_write(proposed / "config"),
    }
(notes / "probe.json").write_text(json.dumps(report, indent=1))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"{env['HIVE_AGENT']} probed", flush=True)
while True:
    time.sleep(3600)
