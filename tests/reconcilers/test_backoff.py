from __future__ import annotations

import itertools

import pytest

from reconcilers.backoff import Backoff


def test_each_failure_doubles_the_wait_up_to_the_cap() -> None:
    b = Backoff(base=1, cap=10)
    assert [b.delay(n) for n in range(7)] == [0, 1, 2, 4, 8, 10, 10]


def test_a_key_failing_for_days_still_gets_the_cap() -> None:
    # The old queue computed base * math.pow(2, n - 1): OverflowError after 1,025 failures.
    assert Backoff(base=0.5, cap=60).delay(10_000) == 60


def test_delays_yield_the_waits_of_a_retry_loop() -> None:
    assert list(itertools.islice(Backoff(0.5, 3).delays(), 5)) == [0.5, 1, 2, 3, 3]


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_a_backoff_that_could_spin_or_never_grow_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base, cap)
