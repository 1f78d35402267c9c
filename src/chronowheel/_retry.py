"""Retry policy: how many attempts, and how long to wait between them."""

from __future__ import annotations

import random

from ._limits import check_int, check_seconds

__all__ = ["Retry"]


class Retry:
    """Exponential backoff with full jitter (AWS architecture blog, 2015).

    ``attempts`` counts every run, the first included. After the ``n``-th
    failure the job waits ``min(max_backoff, backoff * 2**(n-1))`` seconds,
    or with ``jitter`` a uniform draw from zero to that, which spreads a
    thundering herd of retries. Exceptions of a ``non_retryable`` type go
    straight to the dead letters. ``backoff`` and ``max_backoff`` are at
    most ``MAX_DELAY`` (1e10 s), so every delay is one the engine can file.
    """

    __slots__ = ("attempts", "backoff", "jitter", "max_backoff", "non_retryable")

    def __init__(
        self,
        attempts: int,
        *,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        jitter: bool = True,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> None:
        check_int("attempts", attempts)
        backoff = check_seconds("backoff", backoff)
        max_backoff = check_seconds("max_backoff", max_backoff)
        if max_backoff < backoff:
            raise ValueError(f"max_backoff ({max_backoff!r}) must be >= backoff ({backoff!r})")
        if not isinstance(jitter, bool):
            raise TypeError(f"jitter must be a bool, got {type(jitter).__name__}")
        if not isinstance(non_retryable, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in non_retryable
        ):
            raise TypeError(f"non_retryable must be a tuple of exception types, got {non_retryable!r}")
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.non_retryable = non_retryable

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether a job that just failed its ``attempt``-th run with ``error`` runs again."""
        return attempt < self.attempts and not isinstance(error, self.non_retryable)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the ``attempt``-th failure."""
        cap = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 1000))
        return rng.uniform(0.0, cap) if self.jitter else cap

    def __repr__(self) -> str:
        return (
            f"Retry({self.attempts}, backoff={self.backoff}, max_backoff={self.max_backoff}, "
            f"jitter={self.jitter}, non_retryable={self.non_retryable!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Retry):
            return NotImplemented
        return repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))
