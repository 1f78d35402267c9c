"""``Retry`` as a value: its checks, and equal policies compare and hash equal (a task's options compare)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chronowheel import Retry


@pytest.mark.parametrize("jitter", [1, 0, None, "yes"])
def test_jitter_must_be_a_bool(jitter: Any) -> None:
    with pytest.raises(TypeError, match=f"jitter must be a bool, got {type(jitter).__name__}"):
        Retry(3, jitter=jitter)


def test_equal_policies_are_equal_and_hash_alike() -> None:
    one = Retry(3, backoff=2.0, max_backoff=60.0, jitter=False, non_retryable=(KeyError,))
    same = Retry(3, backoff=2, max_backoff=60, jitter=False, non_retryable=(KeyError,))
    assert one == same
    assert hash(one) == hash(same)
    assert len({one, same}) == 1
    for other in (
        Retry(4, backoff=2.0, max_backoff=60.0, jitter=False, non_retryable=(KeyError,)),
        Retry(3, backoff=1.0, max_backoff=60.0, jitter=False, non_retryable=(KeyError,)),
        Retry(3, backoff=2.0, max_backoff=30.0, jitter=False, non_retryable=(KeyError,)),
        Retry(3, backoff=2.0, max_backoff=60.0, jitter=True, non_retryable=(KeyError,)),
        Retry(3, backoff=2.0, max_backoff=60.0, jitter=False),
    ):
        assert one != other
    assert one != "Retry(3)"
    assert one.__eq__("Retry(3)") is NotImplemented


def test_repr_shows_every_setting() -> None:
    text = repr(Retry(5, backoff=0.5, max_backoff=8.0, jitter=False, non_retryable=(ValueError,)))
    assert text == "Retry(5, backoff=0.5, max_backoff=8.0, jitter=False, non_retryable=(<class 'ValueError'>,))"


def test_full_jitter_draws_from_zero_to_the_capped_backoff() -> None:
    retry = Retry(10, backoff=1.0, max_backoff=5.0)
    rng = random.Random(7)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (2000, 5.0)]:
        draws = [retry.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= draw <= cap for draw in draws)
        assert max(draws) > cap * 0.9  # spread over the range, not pinned at its floor
