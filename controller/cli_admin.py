"""`hive`: the admin client over `host.sock`.

Its subcommands, their arguments and help are generated from the host socket's specs
(`controller.host_spec`), one place per command: each field of a command's arguments
model becomes a positional argument (those the spec names `positional`) or an
`--option`, typed and described by the field; an option not given is not sent, so the
daemon's default applies, unless the spec says what `hive` sends instead
(`cli_defaults`), in which case a nullable one gets `--all` to send nothing after all.
The client imports only the specs and the protocol, never the daemon.

Exit codes: 0 ok; 1 the daemon answered with an error; 2 bad usage; 3 the daemon cannot
be reached. `--json` prints the protocol's `result` object as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic.fields import FieldInfo

from controller.commands import Spec
from controller.host_spec import GROUP_DEFAULT, GROUP_HELP, HOST_SPECS
from controller.protocol import ProtocolError, connect_client
from controller.settings import default_runtime_dir, default_state_dir

__all__ = ["main", "parser", "request"]

EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
SPECS = {spec.name: spec for spec in HOST_SPECS}
ALL = "all_"  # the namespace key of `--all`, apart from any field's


def _socket_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ
    if env.get("HIVE_HOST_SOCKET"):
        return Path(env["HIVE_HOST_SOCKET"])
    return default_runtime_dir(env, default_state_dir(env)) / "host.sock"


def _kind(annotation: Any) -> tuple[Callable[[str], Any], tuple[str, ...] | None, bool]:
    """How argparse takes a field of this type: a converter, the choices, a bare flag?"""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        # `X | None` is X given or not; `str | list[str]` (one answer or several) is text.
        return _kind(args[0]) if len(args) == 1 else (str, None, False)
    if typing.get_origin(annotation) is typing.Literal:
        return str, tuple(str(a) for a in args), False
    if annotation is bool:
        return str, None, True
    if annotation in (int, float):
        return annotation, None, False
    return str, None, False


def _help(field: FieldInfo, default: object) -> str:
    text = field.description or ""
    if default not in (None, "", False):
        text += f" (default: {default})"
    return text


def _add_arguments(sub: argparse.ArgumentParser, spec: Spec) -> None:
    for name in spec.positional:
        field = spec.args.model_fields[name]
        convert, choices, _ = _kind(field.annotation)
        sub.add_argument(
            name,
            type=convert,
            choices=choices,
            nargs=None if field.is_required() else "?",
            help=_help(field, None),
        )
    for name, field in spec.args.model_fields.items():
        if name in spec.positional:
            continue
        convert, choices, flag = _kind(field.annotation)
        option = "--" + spec.options.get(name, name).replace("_", "-")
        default = spec.cli_defaults.get(name)
        if flag:
            sub.add_argument(option, dest=name, action="store_true", help=_help(field, None))
            continue
        sub.add_argument(
            option,
            dest=name,
            type=convert,
            choices=choices,
            default=default,
            required=field.is_required(),
            help=_help(field, default if default is not None else field.default),
        )
        if default is not None and not field.is_required() and field.default is None:
            sub.add_argument(
                "--all", dest=ALL, action="store_true", help=f"every {name}, not only {default}"
            )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hive", description="Administer a running hive-c0re.")
    p.add_argument("--socket", help="host socket [$HIVE_HOST_SOCKET, else <runtime>/host.sock]")
    p.add_argument("--json", action="store_true", help="print the raw result as JSON")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for spec in HOST_SPECS:
        parent, *rest = spec.cli
        if rest:  # `hive applied reset`: a group of subcommands under one word
            if parent not in groups:
                text = GROUP_HELP[parent]
                group = sub.add_parser(parent, help=text, description=text)
                groups[parent] = group.add_subparsers(
                    dest=f"{parent}_cmd", required=True, metavar="ACTION"
                )
            leaf = groups[parent].add_parser(rest[0], help=spec.help, description=spec.help)
        else:
            leaf = sub.add_parser(parent, help=spec.help, description=spec.help)
        leaf.set_defaults(spec_name=spec.name)
        _add_arguments(leaf, spec)
    return p


def with_defaults(argv: Sequence[str]) -> list[str]:
    """`argv` with a group's default subcommand put in where none is named
    (`hive inbox alice` -> `hive inbox show alice`)."""
    args = list(argv)
    subcommands: dict[str, set[str]] = {s.cli[0]: set() for s in HOST_SPECS if len(s.cli) > 1}
    for spec in HOST_SPECS:
        if len(spec.cli) > 1:
            subcommands[spec.cli[0]].add(spec.cli[1])
    i = 0
    while i < len(args):  # skip the global options to the command word
        if args[i] == "--socket":
            i += 2
        elif args[i].startswith("--socket=") or args[i] == "--json":
            i += 1
        else:
            break
    if i < len(args) and args[i] in GROUP_DEFAULT:
        following = args[i + 1] if i + 1 < len(args) else None
        if following not in subcommands[args[i]] and following not in ("-h", "--help"):
            args.insert(i + 1, GROUP_DEFAULT[args[i]])
    return args


def request(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The command and the arguments to send for a parsed command line."""
    spec = SPECS[ns.spec_name]
    args: dict[str, Any] = {}
    for name in spec.args.model_fields:
        value = getattr(ns, name, None)
        if value is None or (value is False and name not in spec.positional):
            continue
        args[name] = value
    if getattr(ns, ALL, False):
        args = {k: v for k, v in args.items() if k not in spec.cli_defaults}
    return spec.name, args


# --- printing ---------------------------------------------------------------------------


def _short(value: object) -> str:
    text = "" if value is None else str(value)
    return text[:12] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_short(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a table shows it: a plan as its changes, errors counted, an agent's
    message falling back to what its harness last said."""
    out = dict(row)
    if isinstance(row.get("plan"), list):
        changes = [f"{p['agent']}:{p['action']}" for p in row["plan"] if p["action"] != "none"]
        out["plan"] = ", ".join(changes) or "-"
    if isinstance(row.get("errors"), list):
        pending = row.get("status") == "pending"
        conflicted = pending and row.get("mergeable") is False
        out["errors"] = "conflicts with applied main" if conflicted else len(row["errors"])
    if "turn_reason" in row and not row.get("message"):
        out["message"] = row["turn_reason"]
    return out


def _hive_spend(rows: Sequence[dict[str, Any]]) -> str:
    """The hive's line under `hive agents`: the agents' spend summed."""
    today = sum(float(r.get("spend_today_usd") or 0) for r in rows)
    total = sum(float(r.get("spend_total_usd") or 0) for r in rows)
    tokens_today = sum(int(r.get("tokens_today") or 0) for r in rows)
    tokens_total = sum(int(r.get("tokens_total") or 0) for r in rows)
    return (
        f"hive: ${today:.4f} today (UTC), ${total:.4f} in total; "
        f"{tokens_today} tokens today, {tokens_total} in total"
    )


def _event_line(event: dict[str, Any]) -> str:
    rest = {k: v for k, v in event.items() if k not in ("id", "type", "ts")}
    return f"{event.get('ts', '')} {event.get('type', '')} {json.dumps(rest, default=str)}"


def render(spec: Spec, result: Any) -> str:
    if spec.view == "table":
        rows = result if isinstance(result, list) else [result]
        if not rows and spec.empty:
            return spec.empty
        lines = [table([_cells(r) for r in rows], spec.columns)]
        if spec.name == "agents" and rows:
            lines.append(_hive_spend(rows))
        # What a pending approval's errors are, before anyone tries to approve it.
        lines += [
            f"#{r['id']}: ✗ {e}"
            for r in rows
            if r.get("status") == "pending" and isinstance(r.get("errors"), list)
            for e in r["errors"]
        ]
        return "\n".join(lines)
    if spec.view == "status":
        alarm, main = result.get("alarm"), result.get("proposed_main")
        lines = [f"{k}: {v}" for k, v in result.items() if k not in ("alarm", "proposed_main")]
        if main:
            lines.append(f"proposed_main: {main['sha'][:12]} ({main['state']})")
        lines.append(f"alarm: {alarm['code']}: {alarm['message']}" if alarm else "alarm: none")
        return "\n".join(lines)
    if spec.view == "template":
        return spec.template.format(**result)
    if spec.view == "events":
        return "\n".join(_event_line(e) for e in result) if result else spec.empty
    if spec.view == "decision":
        line = f"approval #{result['id']} {result['status']}"
        if result.get("applied_sha"):
            line += f": applied main is now {result['applied_sha'][:12]}"
        return line
    if spec.view == "fields" and isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    return json.dumps(result, indent=2)


async def _run(ns: argparse.Namespace) -> int:
    path = _socket_path(ns.socket)
    cmd, args = request(ns)
    spec = SPECS[cmd]
    try:
        client = await connect_client(path)
    except ProtocolError as exc:
        print(f"hive: {exc.message}; is hive-c0re running?", file=sys.stderr)
        return EXIT_UNREACHABLE
    async with client:
        try:
            if spec.streaming:
                async for event in client.stream(cmd, **args):
                    print(json.dumps(event) if ns.json else _event_line(event), flush=True)
                return 0
            result = await client.call(cmd, **args)
        except ProtocolError as exc:
            print(f"hive: {cmd}: {exc.message} ({exc.code})", file=sys.stderr)
            return EXIT_UNREACHABLE if exc.code == "closed" else EXIT_ERROR
    print(json.dumps(result, indent=2) if ns.json else render(spec, result))
    return 0


def main(argv: list[str] | None = None) -> None:
    ns = parser().parse_args(with_defaults(sys.argv[1:] if argv is None else argv))
    try:
        code = anyio.run(_run, ns)
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
