"""`hive`: the admin client over `host.sock`.

Its subcommands, their arguments and help are generated from the host socket's specs
(`controller.host_spec`), one place per command: each field of a command's arguments
model becomes a positional argument (those the spec names `positional`) or an
`--option`, typed and described by the field; an option not given is not sent, so the
daemon's default applies, unless the spec says what `hive` sends instead
(`cli_defaults`), in which case a nullable one gets `--all` to send nothing after all.
The client imports only the specs and the protocol, never the daemon.

Exit codes: 0 ok; 1 the daemon answered with an error; 2 bad usage; 3 the daemon cannot
be reached (or went away: `hive watch` and `hive logs -f` say so and exit 3). `--json`
(before or after the command) prints the protocol's `result` object as is. Colour (`hive
diff`) only on a terminal, and never with `NO_COLOR` set.
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


def _several(annotation: Any) -> bool:
    """A field that takes one value or a list (`str | list[str]`): several positionals."""
    return any(typing.get_origin(a) is list for a in typing.get_args(annotation))


def _add_arguments(sub: argparse.ArgumentParser, spec: Spec) -> None:
    # Accepted after the command too (`hive status --json`); SUPPRESS keeps one given
    # before it.
    sub.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the raw result as JSON",
    )
    if spec.follow:
        sub.add_argument(
            "-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C to stop)"
        )
    for name in spec.positional:
        field = spec.args.model_fields[name]
        convert, choices, _ = _kind(field.annotation)
        several = _several(field.annotation)
        sub.add_argument(
            name,
            type=convert,
            choices=choices,
            nargs=("+" if several else None) if field.is_required() else "?",
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
        if isinstance(value, list) and len(value) == 1:
            value = value[0]  # one answer is text; several are a list
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


_SUBJECTS = ("agent", "name", "approval", "question", "message", "to", "recipient")


def _brief(value: object) -> str:
    """A value in a line of an event: an approval or question by its number, a sha
    short, a list counted past a few."""
    if isinstance(value, dict):
        if "id" in value:
            extra = value.get("status") or value.get("asker") or ""
            return f"#{value['id']}" + (f"({extra})" if extra else "")
        return "{" + ", ".join(f"{k}={_brief(v)}" for k, v in list(value.items())[:4]) + "}"
    if isinstance(value, list):
        shown = ",".join(_brief(v) for v in value[:4])
        return shown + (f",+{len(value) - 4}" if len(value) > 4 else "")
    text = _short(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def _event_cells(event: dict[str, Any]) -> dict[str, str]:
    ts = str(event.get("ts", ""))
    subject = next((k for k in _SUBJECTS if event.get(k) not in (None, "")), None)
    rest = [
        f"{k}={_brief(v)}"
        for k, v in event.items()
        if k not in ("id", "type", "ts", subject) and v not in (None, "", [], {})
    ]
    return {
        "time": ts.replace("T", " ")[:23].removesuffix("+00:00"),
        "type": str(event.get("type", "")),
        "subject": _brief(event[subject]) if subject else "",
        "details": " ".join(rest)[:160],
    }


def _event_line(event: dict[str, Any]) -> str:
    c = _event_cells(event)
    return f"{c['time']}  {c['type']:<20} {c['subject']:<12} {c['details']}".rstrip()


_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "d": "\033[1m"}


def coloured(text: str) -> str:
    """A unified diff with git's colours: additions green, deletions red, hunks cyan."""
    out = []
    for line in text.splitlines():
        colour = _COLOURS.get(line[:1], "")
        if line.startswith(("+++", "---")) or line.startswith("diff --git"):
            colour = _COLOURS["d"]
        out.append(f"{colour}{line}\033[0m" if colour else line)
    return "\n".join(out)


def _colour_wanted() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


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
        if not result:
            return spec.empty
        return table([_event_cells(e) for e in result], ("time", "type", "subject", "details"))
    if spec.view == "diff":
        head = (
            f"# approval #{result['id']} {result['ref']} {result['sha'][:12]}: "
            f"{result['files']} file(s), +{result['additions']} -{result['deletions']}"
        )
        text = head + "\n" + result["text"].rstrip("\n")
        return coloured(text) if _colour_wanted() else text
    if spec.view == "lines":
        return "\n".join(result)
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
                print(f"hive: {cmd}: hive-c0re went away (the stream ended)", file=sys.stderr)
                return EXIT_UNREACHABLE
            result = await client.call(cmd, **args)
            if spec.page_on and "limit" not in args and spec.page_on not in args:
                result = await _every_page(client.call, cmd, args, spec.page_on, result)
            print(json.dumps(result, indent=2) if ns.json else render(spec, result), flush=True)
            if getattr(ns, "follow", False):
                await _follow(client.call, cmd, args, result, ns.json)
        except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.IncompleteRead, OSError):
            print(f"hive: {cmd}: hive-c0re went away", file=sys.stderr)
            return EXIT_UNREACHABLE
        except ProtocolError as exc:
            gone = exc.code in ("closed", "unreachable")
            what = "hive-c0re went away" if gone else f"{exc.message} ({exc.code})"
            print(f"hive: {cmd}: {what}", file=sys.stderr)
            return EXIT_UNREACHABLE if gone else EXIT_ERROR
    return 0


FOLLOW_SECONDS = 1.0
PAGED_ROWS_MAX = 100_000


async def _every_page(
    call: Callable[..., Any], cmd: str, args: dict[str, Any], cursor: str, first: list[Any]
) -> list[Any]:
    """`first` and the pages after it, until one is empty."""
    rows, page = list(first), first
    while page and len(rows) < PAGED_ROWS_MAX:
        page = await call(cmd, **{**args, cursor: page[-1]["id"]})
        rows += page
    return rows


async def _follow(
    call: Callable[..., Any], cmd: str, args: dict[str, Any], seen: list[str], as_json: bool
) -> None:
    """Ask again every second and print the lines after those already printed."""
    while True:
        await anyio.sleep(FOLLOW_SECONDS)
        lines: list[str] = await call(cmd, **{**args, "lines": 5000})
        fresh = lines[_overlap(seen, lines) :]
        for line in fresh:
            print(json.dumps(line) if as_json else line, flush=True)
        seen = (seen + fresh)[-5000:]


def _overlap(old: list[str], new: list[str]) -> int:
    """How many lines at the start of `new` are the last ones of `old` (the longest
    such run; only places where `new` repeats `old`'s last line are tried)."""
    if not old:
        return 0
    for i in range(min(len(old), len(new)) - 1, -1, -1):
        if new[i] == old[-1] and old[len(old) - i - 1 :] == new[: i + 1]:
            return i + 1
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
