"""`hive` is generated from the host socket's specs: every command has a subcommand, its
arguments and their help come from the args model, and what it sends is what the
hand-written client sent."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from controller.admin import host_commands
from controller.cli_admin import parser, request, with_defaults
from controller.commands import Spec
from controller.host_spec import HOST_SPECS


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _leaf(spec: Spec) -> argparse.ArgumentParser:
    """The subcommand of `spec`, under a group when it takes two words (`applied reset`)."""
    found = parser()
    for word in spec.cli:
        found = _subparsers(found)[word]
    return found


def test_every_host_command_is_implemented_and_has_a_subcommand() -> None:
    names = [spec.name for spec in HOST_SPECS]
    assert host_commands.unimplemented() == []
    assert sorted(host_commands.commands) == sorted(names)
    assert list(_subparsers(parser())) == list(dict.fromkeys(s.cli[0] for s in HOST_SPECS))
    top = " ".join(parser().format_help().split())
    for spec in HOST_SPECS:
        parent = parser() if len(spec.cli) == 1 else _subparsers(parser())[spec.cli[0]]
        assert spec.cli[0] in top and spec.help in " ".join(parent.format_help().split())
        assert _leaf(spec).get_default("spec_name") == spec.name


@pytest.mark.parametrize("spec", HOST_SPECS, ids=lambda s: s.name)
def test_a_commands_help_shows_each_argument_with_its_description(spec: Spec) -> None:
    text = " ".join(_leaf(spec).format_help().split())
    for name, field in spec.args.model_fields.items():
        option = spec.options.get(name, name)
        shown = name if name in spec.positional else "--" + option.replace("_", "-")
        assert shown in text, f"{spec.name} --help lacks {shown}"
        assert field.description, f"{spec.name}.{name} has no description"
        assert " ".join(field.description.split()) in text


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["status"], ("status", {})),
        (["approvals"], ("approvals", {"status": "pending"})),
        (["approvals", "--all"], ("approvals", {})),
        (["approvals", "--status", "denied"], ("approvals", {"status": "denied"})),
        (["approve", "7"], ("approve", {"id": 7})),
        (["deny", "7"], ("deny", {"id": 7})),
        (["deny", "7", "not now"], ("deny", {"id": 7, "reason": "not now"})),
        (["reconcile"], ("reconcile", {})),
        (["reconcile", "alice"], ("reconcile", {"name": "alice"})),
        (["kill", "alice"], ("kill", {"name": "alice"})),
        (["send", "alice", "hi there"], ("send", {"to": "alice", "body": "hi there"})),
        (["messages"], ("messages", {"limit": 50})),
        (
            ["messages", "--agent", "bob", "--limit", "5"],
            ("messages", {"agent": "bob", "limit": 5}),
        ),
        (["questions"], ("questions", {})),
        (["answer", "3", "yes"], ("answer", {"id": 3, "answer": "yes"})),
        (["cancel-question", "3"], ("cancel-question", {"id": 3})),
        (["events", "--type", "approval"], ("events", {"limit": 50, "type": "approval"})),
        (["watch"], ("watch", {})),
        (["applied", "reset"], ("applied-reset", {})),
        (["applied", "adopt"], ("applied-adopt", {})),
        (["questions", "--status", "answered"], ("questions", {"status": "answered"})),
        (["--json", "questions"], ("questions", {})),
    ],
)
def test_the_generated_command_line_sends_what_the_old_client_sent(
    argv: list[str], sent: tuple[str, dict[str, object]]
) -> None:
    assert request(parser().parse_args(with_defaults(argv))) == sent


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["usage"], ("usage", {})),
        (
            ["usage", "--agent", "alice", "--since", "7d"],
            ("usage", {"agent": "alice", "since": "7d"}),
        ),
        (["inbox", "alice"], ("inbox", {"name": "alice"})),
        (["inbox", "show", "alice"], ("inbox", {"name": "alice"})),
        (["inbox", "purge", "alice"], ("inbox-purge", {"name": "alice"})),
        (
            ["inbox", "purge", "alice", "--from", "bob"],
            ("inbox-purge", {"name": "alice", "sender": "bob"}),
        ),
        (["questions", "cancel", "--agent", "hm1nd"], ("questions-cancel", {"agent": "hm1nd"})),
        (["questions", "cancel", "--all"], ("questions-cancel", {"all": True})),
        (["cancel", "alice"], ("cancel", {"name": "alice"})),
        (["rollback"], ("rollback", {})),
        (["rollback", "12"], ("rollback", {"to": "12"})),
    ],
)
def test_the_guard_rail_commands_send_what_the_issue_names(
    argv: list[str], sent: tuple[str, dict[str, object]]
) -> None:
    assert request(parser().parse_args(with_defaults(argv))) == sent


@pytest.mark.parametrize(
    "argv",
    [
        ["approve"],
        ["approve", "seven"],
        ["approvals", "--status", "weird"],
        ["launch"],
        [],
        ["applied"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert "usage: hive" in capsys.readouterr().err


def test_the_client_loads_no_daemon_module() -> None:
    probe = (
        "import sys, controller.cli_admin as c; c.parser(); "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('controller', 'gitstore', 'reconcilers', 'ui', 'harness', 'hyperhive', 'pygit2'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split()
    assert set(loaded) <= {
        "controller",
        "controller.cli_admin",
        "controller.commands",
        "controller.errors",
        "controller.host_spec",
        "controller.protocol",
        "controller.settings",
        "controller.version",
    }, loaded
