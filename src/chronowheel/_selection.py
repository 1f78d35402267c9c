"""Pick the implementation: the native one when it imports, else the pure one.

Both wheels implement :class:`._wheel_api.Wheel` and both volatile-timer cores
:class:`._volatile.Core`, checked here by mypy (the native ones through their
stub, ``_cwheel.pyi``, which ``mypy.stubtest`` holds to the built module).
``TimerWheel`` and ``TimerCore`` are typed as the protocols: whichever twin
is picked, callers see only those. ``TimerHandle`` is the handle class the
picked core returns (typed as the pure one, which has the same methods).
``JobPath`` is the native ``schedule_nowait`` for the usual call (None on the
pure wheel: there the engine's own method is the whole path), ``refill`` the
native filing of a recovery's jobs (None on the pure wheel: ``_refill.refill``
files them). The journal's native twins are picked in ``_journal.native``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

__all__ = ["WHEEL", "JobPath", "TimerCore", "TimerHandle", "TimerWheel", "refill"]

WHEEL: Literal["native", "pure"]

if TYPE_CHECKING:
    from ._cwheel import JobPath as _NativeJobPath
    from ._cwheel import TimerCore as _NativeCore
    from ._cwheel import TimerWheel as _NativeWheel
    from ._cwheel import refill as _native_refill
    from ._volatile import Core, TimerHandle
    from ._volatile import TimerCore as _PureCore
    from ._wheel import TimerWheel as _PureWheel
    from ._wheel_api import Wheel

    _TWINS: tuple[type[Wheel], ...] = (_NativeWheel, _PureWheel)
    _CORES: tuple[type[Core], ...] = (_NativeCore, _PureCore)
    TimerWheel: type[Wheel] = _NativeWheel
    TimerCore: type[Core] = _NativeCore
    JobPath: type[_NativeJobPath] | None = _NativeJobPath
    refill: Callable[..., int] | None = _native_refill  # the signature of _refill.refill, its pure twin
elif os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
    from ._volatile import TimerCore, TimerHandle
    from ._wheel import TimerWheel

    JobPath = refill = None
    WHEEL = "pure"
else:
    try:
        from ._cwheel import JobPath, TimerCore, TimerHandle, TimerWheel, refill

        WHEEL = "native"
    except ImportError:
        from ._volatile import TimerCore, TimerHandle
        from ._wheel import TimerWheel

        JobPath = refill = None
        WHEEL = "pure"
