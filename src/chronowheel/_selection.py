"""Pick the wheel implementation: the native one when it imports, else the pure one.

Both implement :class:`._wheel_api.Wheel`, checked here by mypy (the native
one through its stub, ``_cwheel.pyi``, which ``mypy.stubtest`` holds to the
built module). ``TimerWheel`` is typed as ``type[Wheel]``: whichever twin is
picked, callers see only the protocol.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

__all__ = ["WHEEL", "TimerWheel"]

WHEEL: Literal["native", "pure"]

if TYPE_CHECKING:
    from ._cwheel import TimerWheel as _NativeWheel
    from ._wheel import TimerWheel as _PureWheel
    from ._wheel_api import Wheel

    _TWINS: tuple[type[Wheel], ...] = (_NativeWheel, _PureWheel)
    TimerWheel: type[Wheel] = _NativeWheel
elif os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
    from ._wheel import TimerWheel

    WHEEL = "pure"
else:
    try:
        from ._cwheel import TimerWheel

        WHEEL = "native"
    except ImportError:
        from ._wheel import TimerWheel

        WHEEL = "pure"
