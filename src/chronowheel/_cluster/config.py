"""``Cluster``: the settings of cluster mode, checked when made (no I/O, no asyncpg)."""

from __future__ import annotations

from typing import Final, Literal

from .._limits import check_choice, check_seconds

__all__ = ["Cluster", "Role"]

Role = Literal["worker", "client"]

SHARDS_MAX: Final = 65_536  # shard numbers are int4; more shards than this only cost refill and renew time


class Cluster:
    """Where a cluster's jobs live and how its engines share them: ``Engine(cluster=Cluster(dsn))``.

    ``dsn`` is an asyncpg connection string. ``shards`` is fixed for the
    life of a cluster's database (every engine must pass the same). An owner
    renews its shards' ``lease`` (seconds) every third of it; a dead owner's
    shards are taken over within about ``lease`` plus a quarter of it.
    ``horizon`` (seconds) is how far ahead an owner loads its shards' jobs
    into its wheel. ``role="client"`` schedules, cancels and reads, but owns
    no shard and fires nothing (web workers).
    """

    __slots__ = ("dsn", "horizon", "lease", "role", "shards")

    def __init__(
        self,
        dsn: str,
        *,
        shards: int = 256,
        lease: float = 10.0,
        horizon: float = 300.0,
        role: Role = "worker",
    ) -> None:
        if not isinstance(dsn, str):  # the value is not shown: a DSN may hold a password
            raise TypeError(f"dsn must be a str (an asyncpg connection string), got {type(dsn).__name__}")
        if not dsn.strip():
            raise ValueError("dsn must be a connection string, got an empty one")
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise TypeError(f"shards must be an int, got {type(shards).__name__}")
        if not 1 <= shards <= SHARDS_MAX:
            raise ValueError(f"shards must be between 1 and {SHARDS_MAX}, got {shards!r}")
        self.dsn = dsn
        self.shards = shards
        self.lease = check_seconds("lease", lease, low=0.2, high=3600)
        self.horizon = check_seconds("horizon", horizon, low=0.1, high=86_400)
        self.role: Role = check_choice("role", role, ("worker", "client"))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Cluster(<dsn>, shards={self.shards}, lease={self.lease:g}, horizon={self.horizon:g}, role={self.role!r})"
        )
