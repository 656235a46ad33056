"""Settings: flags, then environment, then defaults (see DESIGN.md, "Commands").

Intervals, backoff and deadlines live here so tests pass tiny values and never sleep
(all in seconds): the periodic resync; the work queues' workers and the backoff of a
failing reconcile (`backoff_base` doubling up to `backoff_cap`); the crash loop (an
agent that crashes `crash_limit` times within `crash_window` is Stalled; restarts wait
`crash_backoff` doubling up to `backoff_cap`, the first one none); the grace a stopping
agent gets before SIGKILL; and how often the question expiry re-reads pending questions
at the latest (it also wakes at the nearest deadline and on every new question); how
long a permission question waits for the operator; how many warm claude sessions the
host keeps.
The size and shape limits of a proposed tree (`gitstore.limits.Limits`) ride along.

Limits on what a client may hold: connections at once on host.sock and on each agent's
socket (over the cap a connection is refused with `too_many_connections`), and how long
a connection may sit without a request before it is closed (`idle_timeout`). With the
defaults a hive of 200 agents holds at most ~6,500 descriptors for sockets, well within
the NixOS unit's `LimitNOFILE`; `hive-c0re serve` also raises its soft limit to the hard
one at start.

The broker's quotas (`controller/quotas.py`): the largest message body, what one
agent's inbox may hold unacknowledged (messages and bytes), how fast one agent may send;
and how many bytes one page of a list answer may hold (`controller/paging.py`). Bodies
and pages must fit in a socket line (`protocol.MAX_LINE`, 1 MiB) with room to spare.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from controller import version
from controller.protocol import MAX_LINE

if TYPE_CHECKING:
    from gitstore.limits import Limits
    from reconcilers.kubesettings import KubeSettings

__all__ = [
    "RUNTIMES",
    "Settings",
    "default_runtime_dir",
    "default_state_dir",
    "is_loopback",
    "parse_address",
]

RUNTIMES = ("process", "nixos", "kubernetes")


# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_SUN_PATH_MAX = 107


def _default_limits() -> Limits:
    # Imported here: the admin client reads settings and loads no gitstore module.
    from gitstore.limits import Limits

    return Limits()


def default_state_dir(env: Mapping[str, str]) -> Path:
    if env.get("HIVE_STATE_DIR"):
        return Path(env["HIVE_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / "hyperhive"


def default_runtime_dir(env: Mapping[str, str], state_dir: Path) -> Path:
    if env.get("HIVE_RUNTIME_DIR"):
        return Path(env["HIVE_RUNTIME_DIR"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "hyperhive"
    return state_dir / "run"


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}={env[name]!r}: use 1 or 0")


def is_loopback(host: str) -> bool:
    """Whether a *bind address* is loopback-only (never used on a request's Host)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"address {value!r} must be HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    runtime_dir: Path
    runtime: str = "process"
    dashboard: str = "127.0.0.1:7000"
    resync_interval: float = 30.0
    workers: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    crash_limit: int = 5
    crash_window: float = 120.0
    crash_backoff: float = 1.0
    stop_grace: float = 5.0
    question_poll: float = 60.0
    # How often limit holds (hive.toml) are reviewed at the latest: a new UTC day, an
    # hour with room again; a move of applied main reviews them at once.
    limits_poll: float = 30.0
    # A permission question (a tool outside an agent's allowed_tools) is denied when
    # nobody answered it within this long (`HIVE_PERMISSION_TTL`).
    permission_ttl: float = 600.0
    # At most this many claude sessions are kept warm on the host (`HIVE_WARM_MAX`);
    # over it the least recently used goes cold. How long one stays warm after its last
    # turn is the harness's `HIVE_WARM_IDLE` (passed on from hive-c0re's environment).
    warm_max: int = 8
    host_connections: int = 64
    agent_connections: int = 32
    idle_timeout: float = 600.0
    message_max_bytes: int = 256 * 1024
    inbox_max_messages: int = 1000
    inbox_max_bytes: int = 16 * 1024 * 1024
    send_max_bytes_per_minute: int = 16 * 1024 * 1024
    page_max_bytes: int = 512 * 1024
    # Notifications (`controller.notify`): tries per notice, the first retry's wait
    # (doubling up to `notify_backoff_cap`), one try's deadline, notices one target may
    # queue.
    notify_attempts: int = 5
    notify_backoff: float = 1.0
    notify_backoff_cap: float = 60.0
    notify_timeout: float = 10.0
    notify_queue: int = 1000
    harness_version: str = field(default_factory=version.harness_version)
    harness_command: tuple[str, ...] = ()
    dashboard_enabled: bool = True
    # The process runtime runs every agent in a bubblewrap sandbox unless this is set
    # (`--unsandboxed` / HIVE_UNSANDBOXED=1): then agents have the operator's rights.
    unsandboxed: bool = False
    # Size and shape limits every plan checks (`gitstore.limits`); validated when built.
    limits: Limits = field(default_factory=_default_limits)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # The agent protocol over TLS on TCP (`controller.agent_tls`), HOST:PORT, off when
    # empty (`--agent-tls` / HIVE_AGENT_TLS); its certificate and key (HIVE_TLS_CERT,
    # HIVE_TLS_KEY, PEM files). Agents log in with ServiceAccount tokens, so it needs
    # the Kubernetes API (`kube`).
    agent_tls: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # The kubernetes runtime's settings (`reconcilers.kubesettings`, HIVE_KUBE_*): read
    # when the runtime is kubernetes or the agent protocol is served over TLS.
    kube: KubeSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        state = overrides.pop("state_dir", None) or default_state_dir(env)
        state = Path(str(state)).expanduser().absolute()
        runtime_dir = overrides.pop("runtime_dir", None) or default_runtime_dir(env, state)
        runtime_dir = Path(str(runtime_dir)).expanduser().absolute()
        values: dict[str, object] = {
            "runtime": env.get("HIVE_RUNTIME", "process"),
            "dashboard": env.get("HIVE_DASHBOARD", "127.0.0.1:7000"),
            "unsandboxed": _flag(env, "HIVE_UNSANDBOXED"),
            "agent_tls": env.get("HIVE_AGENT_TLS", ""),
            "tls_cert": env.get("HIVE_TLS_CERT", ""),
            "tls_key": env.get("HIVE_TLS_KEY", ""),
            "environ": env,
        }
        for key, name, kind in (
            ("permission_ttl", "HIVE_PERMISSION_TTL", float),
            ("warm_max", "HIVE_WARM_MAX", int),
        ):
            if env.get(name):
                try:
                    values[key] = kind(env[name])
                except ValueError as exc:
                    raise ValueError(f"{name}={env[name]!r}: not a number") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("kube") is None and (
            values["runtime"] == "kubernetes" or values.get("agent_tls")
        ):
            from reconcilers.kubesettings import KubeSettings

            values["kube"] = KubeSettings.from_env(env)
        settings = cls(state_dir=state, runtime_dir=runtime_dir, **values)  # type: ignore[arg-type]
        if settings.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {settings.runtime!r}: use {', '.join(RUNTIMES)}")
        host, _ = parse_address(settings.dashboard)
        if (
            settings.dashboard_enabled
            and not is_loopback(host)
            and not settings.environ.get("HIVE_DASHBOARD_TOKEN")
        ):
            # Anyone who reaches it could approve, every agent included (they share the
            # host's network, or the cluster's).
            raise ValueError(
                f"the dashboard on {host} is reachable beyond this machine, and from every "
                "agent: set HIVE_DASHBOARD_TOKEN (its login), or bind it to 127.0.0.1"
            )
        if settings.runtime == "kubernetes" and not settings.agent_tls:
            raise ValueError(
                "the kubernetes runtime needs the agent protocol over TLS (agents share no "
                "unix socket with hive-c0re): set --agent-tls / HIVE_AGENT_TLS"
            )
        if settings.agent_tls:
            parse_address(settings.agent_tls)
            if not (settings.tls_cert and settings.tls_key):
                raise ValueError(
                    "the agent protocol over TLS needs a certificate and key: "
                    "HIVE_TLS_CERT and HIVE_TLS_KEY"
                )
        settings.check_intervals()
        # The longest socket path: an agent's, while it is staged under a temporary name.
        longest = settings.runtime_dir / "agents" / ("x" * 31) / ".mcp.sock.4194304"
        if len(str(longest).encode()) > _SUN_PATH_MAX:
            raise ValueError(
                f"runtime dir {settings.runtime_dir} is too long for unix socket paths "
                f"({_SUN_PATH_MAX} bytes with an agent's socket below it); "
                "use a shorter --runtime-dir / HIVE_RUNTIME_DIR"
            )
        return settings

    def check_intervals(self) -> None:
        """Refuse intervals and counts that would spin, divide by zero or never fire."""
        for name in (
            "resync_interval",
            "backoff_base",
            "backoff_cap",
            "crash_window",
            "crash_backoff",
            "question_poll",
            "limits_poll",
            "permission_ttl",
            "idle_timeout",
            "notify_backoff",
            "notify_backoff_cap",
            "notify_timeout",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.stop_grace < 0:
            raise ValueError(f"stop_grace must not be negative, not {self.stop_grace!r}")
        for name in (
            "workers",
            "crash_limit",
            "host_connections",
            "agent_connections",
            "message_max_bytes",
            "inbox_max_messages",
            "inbox_max_bytes",
            "send_max_bytes_per_minute",
            "page_max_bytes",
            "warm_max",
            "notify_attempts",
            "notify_queue",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        if self.backoff_base > self.backoff_cap or self.crash_backoff > self.backoff_cap:
            raise ValueError("backoff_base and crash_backoff must not exceed backoff_cap")
        if self.notify_backoff > self.notify_backoff_cap:
            raise ValueError("notify_backoff must not exceed notify_backoff_cap")
        for name in ("message_max_bytes", "page_max_bytes"):
            if getattr(self, name) > MAX_LINE // 2:
                raise ValueError(f"{name} must be at most {MAX_LINE // 2} (half a socket line)")
        if self.inbox_max_bytes < self.message_max_bytes:
            raise ValueError("inbox_max_bytes must hold at least one message_max_bytes")
        if self.send_max_bytes_per_minute < self.message_max_bytes:
            raise ValueError(
                "send_max_bytes_per_minute must allow at least one message_max_bytes a minute"
            )
