from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import Settings


def test_defaults_follow_the_xdg_directories() -> None:
    s = Settings.from_env({"HOME": "/home/op", "XDG_RUNTIME_DIR": "/run/user/1000"})
    assert s.state_dir == Path("/home/op/.local/state/hyperhive")
    assert s.runtime_dir == Path("/run/user/1000/hyperhive")
    assert (s.runtime, s.dashboard) == ("process", "127.0.0.1:7000")
    bare = Settings.from_env({"HOME": "/home/op", "XDG_STATE_HOME": "/srv/state"})
    assert bare.state_dir == Path("/srv/state/hyperhive")
    assert bare.runtime_dir == Path("/srv/state/hyperhive/run")


def test_flags_beat_the_environment() -> None:
    env = {
        "HOME": "/h",
        "HIVE_STATE_DIR": "/env/state",
        "HIVE_RUNTIME": "nixos",
        "HIVE_DASHBOARD": "0.0.0.0:9000",
        "HIVE_DASHBOARD_TOKEN": "t0ken",
    }
    from_env = Settings.from_env(env)
    assert (from_env.state_dir, from_env.runtime, from_env.dashboard) == (
        Path("/env/state"),
        "nixos",
        "0.0.0.0:9000",
    )
    flags = Settings.from_env(
        env, state_dir="/flag/state", runtime="process", dashboard="127.0.0.1:7100"
    )
    assert (flags.state_dir, flags.runtime, flags.dashboard) == (
        Path("/flag/state"),
        "process",
        "127.0.0.1:7100",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runtime": "docker"}, "unknown runtime 'docker'"),
        ({"dashboard": "localhost"}, "must be HOST:PORT"),
        ({"dashboard": "127.0.0.1:99999"}, "must be HOST:PORT"),
        ({"runtime_dir": "/tmp/" + "x" * 80}, "too long for unix socket paths"),
        ({"workers": 0}, "workers must be a whole number >= 1"),
        ({"crash_limit": 0}, "crash_limit must be a whole number >= 1"),
        ({"resync_interval": 0}, "resync_interval must be a positive number of seconds"),
        ({"question_poll": float("inf")}, "question_poll must be a positive number"),
        ({"crash_window": -1}, "crash_window must be a positive number"),
        ({"stop_grace": -1}, "stop_grace must not be negative"),
        ({"backoff_base": 5, "backoff_cap": 1}, "must not exceed backoff_cap"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"HOME": "/h"}, **overrides)


def test_a_dashboard_beyond_loopback_needs_a_token() -> None:
    env = {"HOME": "/h", "HIVE_DASHBOARD": "0.0.0.0:9000"}
    with pytest.raises(ValueError, match="set HIVE_DASHBOARD_TOKEN"):
        Settings.from_env(env)
    assert Settings.from_env(env, dashboard_enabled=False).dashboard == "0.0.0.0:9000"
    assert Settings.from_env({**env, "HIVE_DASHBOARD": "[::1]:9000"}).dashboard == "[::1]:9000"
