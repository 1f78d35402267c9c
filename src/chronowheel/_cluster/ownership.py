"""Which engine owns which shard, and whether a lease may still be used: sans-IO, times passed in.

Shards are assigned by rendezvous hashing over the live engines: each shard
goes to the engine with the highest ``h(shard, engine)``, so a join moves
about ``S/N`` shards to the newcomer, a leave spreads the leaver's shards
evenly, and nothing else moves. The hash is the first 8 bytes of blake2b,
stable across processes and versions (never Python's ``hash``).

A lease is granted by the database, on its clock, for ``lease`` seconds from
when it ran the statement. The engine cannot see that clock, so it keeps its
own bound: a lease counts as held only until the *sending* time of its last
successful renew plus ``lease`` minus a margin, on the local monotonic
clock. That is earlier than the database's expiry whatever the round trip
took, so an owner woken from a pause starts nothing it claimed before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from hashlib import blake2b
from typing import Final

__all__ = ["Lease", "Ownership", "rendezvous", "shard_of"]

GUARD_MARGIN: Final = 0.1  # of the lease: drift between the two clocks, and the time from a claim to a start


def _h(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big")


def shard_of(name: str, shards: int) -> int:
    """The shard of a job's key (or, without one, of its id)."""
    return _h(name) % shards


def rendezvous(shard: int, engines: Iterable[str]) -> str:
    """The engine that should own ``shard`` among ``engines`` (ties, which blake2b makes unlikely, by id)."""
    return max(engines, key=lambda engine: (_h(f"{shard}/{engine}"), engine))


class Lease:
    """One held shard: its fencing token, and until when (local monotonic seconds) it may be used."""

    __slots__ = ("token", "until")

    def __init__(self, token: int, until: float) -> None:
        self.token = token
        self.until = until


class Ownership:
    """The shards one engine holds, and the plan to move towards its rendezvous share.

    ``me`` is the engine's id; ``lease`` the lease length in seconds. Every
    method takes ``now`` or ``sent`` on the local monotonic clock.
    """

    def __init__(self, me: str, shards: int, lease: float) -> None:
        self.me = me
        self.shards = shards
        self.lease = lease
        self.held: dict[int, Lease] = {}

    def _until(self, sent: float) -> float:
        return sent + self.lease * (1 - GUARD_MARGIN)

    def wanted(self, live: Collection[str]) -> set[int]:
        """The shards this engine wins among the ``live`` engines (itself counted in)."""
        engines = {*live, self.me}
        return {shard for shard in range(self.shards) if rendezvous(shard, engines) == self.me}

    def to_release(self, live: Collection[str]) -> set[int]:
        """Held shards another live engine wins: handed over gracefully."""
        return set(self.held) - self.wanted(live)

    def acquired(self, won: Iterable[tuple[int, int]], sent: float) -> None:
        """The database granted these ``(shard, token)`` leases by a statement sent at ``sent``."""
        for shard, token in won:
            self.held[shard] = Lease(token, self._until(sent))

    def renewed(self, kept: Collection[int], sent: float) -> set[int]:
        """A renew sent at ``sent`` came back with the shards in ``kept``: the others are lost, and returned."""
        lost = set(self.held) - set(kept)
        until = self._until(sent)
        for shard in kept:
            lease = self.held.get(shard)
            if lease is not None:
                lease.until = until
        for shard in lost:
            del self.held[shard]
        return lost

    def drop(self, shards: Iterable[int]) -> None:
        """Shards released, or found lost by a claim."""
        for shard in shards:
            self.held.pop(shard, None)

    def token(self, shard: int, now: float) -> int | None:
        """The token to claim under in ``shard``, or None: not held, or held past the local guard."""
        lease = self.held.get(shard)
        if lease is None or now >= lease.until:
            return None
        return lease.token

    def pairs(self) -> tuple[list[int], list[int]]:
        """The held shards and their tokens, as the statements' two arrays."""
        shards = list(self.held)
        return shards, [self.held[shard].token for shard in shards]
