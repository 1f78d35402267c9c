"""Types of the Cython module (``native/_cwheel.pyx``).

``TimerWheel``: the same surface as ``chronowheel._wheel.TimerWheel``;
``TimerCore`` and ``TimerHandle``: those of ``chronowheel._volatile``.
``python -m mypy.stubtest chronowheel._cwheel`` checks it against the built
module in ``make test``; the contracts are :class:`chronowheel._wheel_api.Wheel`
and :class:`chronowheel._volatile.Core`.
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, final

from ._job import Job
from ._wheel_api import Wheel

@final
class TimerWheel:
    def __init__(self, levels: int = 6, *, start: int = 0) -> None: ...
    @property
    def now(self) -> int: ...
    @property
    def levels(self) -> int: ...
    def __len__(self) -> int: ...
    def add(self, deadline: int, payload: object, priority: int = 0) -> int: ...
    def cancel(self, handle: int) -> bool: ...
    def reschedule(self, handle: int, deadline: int) -> bool: ...
    def deadline(self, handle: int) -> int | None: ...
    def next_expiry(self) -> int | None: ...
    def advance(self, now: int, limit: int | None = None) -> list[Any]: ...
    def hide(self, kind: type | None) -> None: ...

def refill(
    jobs: list[Job],
    start: int,
    owner: object,
    now: float,
    since_epoch: float,
    rate: float,
    wheels: dict[str, Wheel],
    indexed: dict[str, Job],
    keyed: dict[str, Job],
) -> int: ...

@final
class TimerHandle:
    def cancel(self) -> bool: ...
    def reschedule(self, delay: float) -> bool: ...
    def when(self) -> float | None: ...
    def cancelled(self) -> bool: ...

@final
class TimerCore:
    sleep_tick: int
    guard: bool
    quiet: bool
    def __init__(
        self,
        time: Callable[[], float],
        epoch: float,
        rate: float,
        wake: Callable[[], object],
        check: Callable[[str], object],
    ) -> None: ...
    @property
    def wheel(self) -> TimerWheel: ...
    @property
    def epoch(self) -> float: ...
    @property
    def rate(self) -> float: ...
    def time(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle: ...
    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle: ...
    def file(self, tick: int, payload: object) -> TimerHandle: ...
    def fire(self, now: int, limit: int, loop: asyncio.AbstractEventLoop, counts: MutableMapping[str, int]) -> int: ...

@final
class JobPath:
    @property
    def cloning(self) -> bool: ...
    def __init__(
        self,
        engine: object,
        checked: Callable[..., Any],
        core: Any,
        timers: Any,
        job: Callable[..., Any],
        ids: list[str],
        wall: Callable[[], float],
        registry: Any,
        scheduled: Callable[..., Awaitable[Any]],
        durable: tuple[Any, Any, Any, int, int] | None = None,
    ) -> None: ...
    def schedule_nowait(
        self, task: Any, *extra: Any, args: Any = ..., delay: Any = ..., key: Any = ..., **options: Any
    ) -> Any: ...
    async def schedule(
        self, task: Any, *extra: Any, args: Any = ..., delay: Any = ..., key: Any = ..., **options: Any
    ) -> Any: ...
