"""`hive-c0re`: the daemon's command line."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys

import anyio

from controller.settings import Settings
from controller.version import VERSION
from hyperhive.daemon import run_daemon

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hive-c0re",
        description="hyperhive's daemon: a GitOps controller for a swarm of Claude Code agents.",
    )
    parser.add_argument("--version", action="version", version=f"hive-c0re {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the daemon until SIGTERM/SIGINT",
        description="Run the daemon. Flags override HIVE_* environment "
        "variables, which override the defaults.",
    )
    serve.add_argument(
        "--state-dir",
        help="state (repos, sqlite, agents) [$HIVE_STATE_DIR, default ~/.local/state/hyperhive]",
    )
    serve.add_argument(
        "--runtime-dir",
        help="sockets [$HIVE_RUNTIME_DIR, default $XDG_RUNTIME_DIR/hyperhive or <state>/run]",
    )
    serve.add_argument(
        "--runtime",
        choices=("process", "nixos"),
        help="where agents run [$HIVE_RUNTIME, default process]",
    )
    serve.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="dashboard address [$HIVE_DASHBOARD, default 127.0.0.1:7000]",
    )
    serve.add_argument(
        "--resync", type=float, metavar="SECONDS", help="periodic resync interval (default 30)"
    )
    serve.add_argument(
        "--host-connections",
        type=int,
        metavar="N",
        help="connections host.sock holds at once (default 64)",
    )
    serve.add_argument(
        "--agent-connections",
        type=int,
        metavar="N",
        help="connections each agent's socket holds at once (default 32)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close a socket connection idle this long (default 600)",
    )
    serve.add_argument(
        "--inbox-max-messages",
        type=int,
        metavar="N",
        help="unacknowledged messages one agent's inbox holds (default 1000)",
    )
    serve.add_argument(
        "--inbox-max-bytes",
        type=int,
        metavar="BYTES",
        help="bytes of unacknowledged messages one agent's inbox holds (default 16 MiB)",
    )
    serve.add_argument(
        "--warm-max",
        type=int,
        metavar="N",
        help="claude sessions kept warm on this host at once; over it the least recently "
        "used goes cold [$HIVE_WARM_MAX, default 8]",
    )
    serve.add_argument(
        "--warm-idle",
        type=float,
        metavar="SECONDS",
        help="an agent's claude stays warm this long after its last turn "
        "[$HIVE_WARM_IDLE, default 300]",
    )
    serve.add_argument(
        "--permission-ttl",
        type=float,
        metavar="SECONDS",
        help="a tool call outside an agent's allowed_tools waits this long for the "
        "operator, then is denied [$HIVE_PERMISSION_TTL, default 600]",
    )
    serve.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    serve.add_argument(
        "--unsandboxed",
        action="store_true",
        help="process runtime: run agents without a bubblewrap sandbox, with all of the "
        "operator's rights (they can reach host.sock, applied.git and each other) "
        "[$HIVE_UNSANDBOXED=1]",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one (as Go's runtime does): every
    socket connection is a descriptor, and the usual soft limit of 1,024 is far below
    what the caps allow. Returns the (soft, hard) limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("cannot raise the open-files limit: %s", exc)
    return soft, hard


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # watchfiles logs every ref change at INFO; the bus already reports what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if args.warm_idle is not None:
        if not 0 < args.warm_idle < float("inf"):
            print("hive-c0re: --warm-idle must be a positive number of seconds", file=sys.stderr)
            raise SystemExit(2)
        # The harnesses read it; the process runtime passes it on from this environment.
        os.environ["HIVE_WARM_IDLE"] = str(args.warm_idle)
    try:
        settings = Settings.from_env(
            state_dir=args.state_dir,
            runtime_dir=args.runtime_dir,
            runtime=args.runtime,
            dashboard=args.dashboard,
            resync_interval=args.resync,
            host_connections=args.host_connections,
            agent_connections=args.agent_connections,
            idle_timeout=args.idle_timeout,
            inbox_max_messages=args.inbox_max_messages,
            inbox_max_bytes=args.inbox_max_bytes,
            warm_max=args.warm_max,
            permission_ttl=args.permission_ttl,
            dashboard_enabled=False if args.no_dashboard else None,
            unsandboxed=True if args.unsandboxed else None,
        )
    except ValueError as exc:
        print(f"hive-c0re: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    soft, _ = raise_file_limit()
    logging.getLogger(__name__).info("open-files limit %d", soft)
    anyio.run(run_daemon, settings)


if __name__ == "__main__":
    main()
