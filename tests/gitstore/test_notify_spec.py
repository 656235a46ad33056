from __future__ import annotations

import pytest

from gitstore.notify_spec import NOTIFY_EVENTS, parse_notify


def test_a_target_defaults_to_every_event() -> None:
    (target,) = parse_notify([{"kind": "ntfy", "url_env": "HIVE_NTFY"}])
    assert target.kind == "ntfy" and target.events == NOTIFY_EVENTS


def test_a_target_may_pick_its_events() -> None:
    (target,) = parse_notify([{"kind": "slack", "url_env": "S", "events": ["approval"]}])
    assert target.events == ("approval",)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"kind": "webhook"}, "array of tables"),
        ([{"kind": "email", "url_env": "X"}], "notify[0].kind"),
        ([{"kind": "webhook", "url_env": "https://hooks.example/T0K3N"}], "never the URL"),
        ([{"kind": "webhook", "url_env": "X", "events": ["push"]}], "notify[0].events"),
        ([{"kind": "webhook", "url_env": "X", "events": []}], "notify[0].events"),
        ([{"kind": "webhook", "url_env": "X", "events": ["hold", "hold"]}], "twice"),
        ([{"kind": "webhook", "url_env": "X", "secret": "s"}], "notify[0].secret"),
        ([{"kind": "webhook", "url_env": "X"}] * 17, "at most 16"),
    ],
)
def test_a_bad_target_is_refused_with_its_place(raw: object, words: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_notify(raw)
    assert words in str(info.value)
