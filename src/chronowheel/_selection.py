"""Pick the wheel implementation: the native one when it imports, else the pure one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

__all__ = ["WHEEL", "TimerWheel"]

WHEEL: Literal["native", "pure"]

if TYPE_CHECKING:
    from ._wheel import TimerWheel
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
