"""`hive`: the admin client over `host.sock`.

Exit codes: 0 ok; 1 the daemon answered with an error; 2 bad usage; 3 the daemon cannot
be reached. `--json` prints the protocol's `result` object as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from controller.protocol import ProtocolError, connect_client
from controller.settings import default_runtime_dir, default_state_dir

__all__ = ["main"]

EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def _socket_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ
    if env.get("HIVE_HOST_SOCKET"):
        return Path(env["HIVE_HOST_SOCKET"])
    return default_runtime_dir(env, default_state_dir(env)) / "host.sock"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hive", description="Administer a running hive-c0re.")
    p.add_argument("--socket", help="host socket [$HIVE_HOST_SOCKET, else <runtime>/host.sock]")
    p.add_argument("--json", action="store_true", help="print the raw result as JSON")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("status", help="daemon version, applied sha, counts")
    sub.add_parser("repos", help="paths of the proposed and applied repos")
    sub.add_parser("agents", help="agents with desired and observed state")
    ap = sub.add_parser("approvals", help="list approvals (pending first by default)")
    ap.add_argument("--status", choices=("pending", "approved", "denied", "superseded", "failed"))
    ap.add_argument("--all", action="store_true", help="every status, not only pending")
    sub.add_parser("approve", help="approve-by-merge an approval").add_argument("id", type=int)
    d = sub.add_parser("deny", help="deny an approval with a reason")
    d.add_argument("id", type=int)
    d.add_argument("reason", nargs="?", default="")
    r = sub.add_parser("reconcile", help="queue a reconcile of one agent or all")
    r.add_argument("name", nargs="?")
    for verb, text in (
        ("start", "start an agent and clear its hold"),
        ("stop", "stop an agent and hold it stopped"),
        ("restart", "restart an agent (clears its hold)"),
        ("kill", "kill an agent and hold it until `hive start`"),
    ):
        sub.add_parser(verb, help=text).add_argument("name")
    s = sub.add_parser("send", help="send a message to an agent as the operator")
    s.add_argument("to")
    s.add_argument("body")
    m = sub.add_parser("messages", help="recent messages")
    m.add_argument("--agent")
    m.add_argument("--limit", type=int, default=50)
    sub.add_parser("questions", help="the manager's pending questions")
    a = sub.add_parser("answer", help="answer a question of the manager")
    a.add_argument("id", type=int)
    a.add_argument("answer")
    c = sub.add_parser("cancel-question", help="cancel a question of the manager")
    c.add_argument("id", type=int)
    ev = sub.add_parser("events", help="the audit log: decisions and lifecycle, newest first")
    ev.add_argument("--type", default="", help="only types starting with this, e.g. approval")
    ev.add_argument("--limit", type=int, default=50)
    sub.add_parser("watch", help="stream events until interrupted")
    gate = sub.add_parser("applied", help="resolve an alarm: applied main moved outside hive-c0re")
    gate.add_argument(
        "action",
        choices=("reset", "adopt"),
        help="reset: move it back to the recorded sha; adopt: propose the found sha as an "
        "approval (and move it back until that is approved)",
    )
    return p


def _request(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    cmd: str = ns.cmd
    if cmd == "approvals":
        status = None if ns.all else (ns.status or "pending")
        return cmd, {"status": status} if status else {}
    if cmd in ("approve",):
        return cmd, {"id": ns.id}
    if cmd == "deny":
        return cmd, {"id": ns.id, "reason": ns.reason}
    if cmd == "reconcile":
        return cmd, {"name": ns.name} if ns.name else {}
    if cmd in ("start", "stop", "restart", "kill"):
        return cmd, {"name": ns.name}
    if cmd == "send":
        return cmd, {"to": ns.to, "body": ns.body}
    if cmd == "messages":
        args: dict[str, Any] = {"limit": ns.limit}
        if ns.agent:
            args["agent"] = ns.agent
        return cmd, args
    if cmd == "answer":
        return cmd, {"id": ns.id, "answer": ns.answer}
    if cmd == "cancel-question":
        return cmd, {"id": ns.id}
    if cmd == "events":
        return cmd, {"limit": ns.limit, "type": ns.type}
    if cmd == "applied":
        return f"applied-{ns.action}", {}
    return cmd, {}


def _short(value: object) -> str:
    text = "" if value is None else str(value)
    return text[:12] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def _errors_cell(approval: dict[str, Any]) -> str:
    if approval.get("mergeable") is False and approval["status"] == "pending":
        return "conflicts with applied main"
    return str(len(approval["errors"]))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_short(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def render(cmd: str, result: Any) -> str:
    if cmd == "agents":
        rows = [{**r, "message": r.get("message") or r.get("turn_reason", "")} for r in result]
        return table(
            rows,
            [
                "name",
                "role",
                "state",
                "turn",
                "ready",
                "reason",
                "desired_rev",
                "observed_rev",
                "port",
                "hold",
                "message",
            ],
        )
    if cmd == "approvals":
        rows = [
            {
                **a,
                "plan": ", ".join(
                    f"{p['agent']}:{p['action']}" for p in a["plan"] if p["action"] != "none"
                )
                or "-",
                "errors": _errors_cell(a),
            }
            for a in result
        ]
        if not rows:
            return "no approvals"
        lines = [table(rows, ["id", "kind", "status", "ref", "sha", "plan", "errors", "summary"])]
        # What a pending approval's errors are, before anyone tries to approve it.
        lines += [
            f"#{a['id']}: ✗ {e}" for a in result if a["status"] == "pending" for e in a["errors"]
        ]
        return "\n".join(lines)
    if cmd == "applied-reset":
        return (
            f"applied main moved back from {result['found_sha'][:12] or 'nothing'} "
            f"to the recorded {result['recorded_sha'][:12]}"
        )
    if cmd == "applied-adopt":
        return (
            f"approval #{result['id']} proposes {result['sha'][:12]} ({result['ref']}); "
            f"applied main is back at the recorded sha until it is approved"
        )
    if cmd == "messages":
        return (
            table(result, ["id", "sender", "recipient", "created_at", "body"])
            if result
            else "no messages"
        )
    if cmd == "questions":
        return (
            table(result, ["id", "question", "options", "expires_at"]) if result else "no questions"
        )
    if cmd == "events":
        return "\n".join(_event_line(e) for e in result) if result else "no events"
    if cmd in ("approve", "deny"):
        line = f"approval #{result['id']} {result['status']}"
        if result.get("applied_sha"):
            line += f": applied main is now {result['applied_sha'][:12]}"
        return line
    if cmd in ("start", "stop", "restart", "kill"):
        return table([result], ["name", "state", "ready", "hold", "message"])
    if cmd == "status":
        alarm, main = result.get("alarm"), result.get("proposed_main")
        lines = [f"{k}: {v}" for k, v in result.items() if k not in ("alarm", "proposed_main")]
        if main:
            lines.append(f"proposed_main: {main['sha'][:12]} ({main['state']})")
        lines.append(f"alarm: {alarm['code']}: {alarm['message']}" if alarm else "alarm: none")
        return "\n".join(lines)
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    return json.dumps(result, indent=2)


async def _run(ns: argparse.Namespace) -> int:
    path = _socket_path(ns.socket)
    cmd, args = _request(ns)
    try:
        client = await connect_client(path)
    except ProtocolError as exc:
        print(f"hive: {exc.message}; is hive-c0re running?", file=sys.stderr)
        return EXIT_UNREACHABLE
    async with client:
        try:
            if cmd == "watch":
                async for event in client.stream("watch"):
                    print(json.dumps(event) if ns.json else _event_line(event), flush=True)
                return 0
            result = await client.call(cmd, **args)
        except ProtocolError as exc:
            print(f"hive: {cmd}: {exc.message} ({exc.code})", file=sys.stderr)
            return EXIT_UNREACHABLE if exc.code == "closed" else EXIT_ERROR
    print(json.dumps(result, indent=2) if ns.json else render(cmd, result))
    return 0


def _event_line(event: dict[str, Any]) -> str:
    rest = {k: v for k, v in event.items() if k not in ("id", "type", "ts")}
    return f"{event.get('ts', '')} {event.get('type', '')} {json.dumps(rest, default=str)}"


def main(argv: list[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    try:
        code = anyio.run(_run, ns)
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
