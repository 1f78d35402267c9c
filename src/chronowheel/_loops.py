"""Which event loops the engine runs on: asyncio's, and loops that implement it (uvloop); not trio's."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["running_loop"]


def running_loop(call: str) -> asyncio.AbstractEventLoop:
    """The running asyncio loop; else a RuntimeError that says what the engine needs, and names trio if it runs."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    hint = "; run it under asyncio.run(), uvloop.run(), or anyio.run(..., backend='asyncio')"
    if _in_trio():
        raise RuntimeError(f"{call}: chronowheel runs on asyncio (or uvloop), not trio{hint}")
    raise RuntimeError(f"{call}: chronowheel needs a running asyncio event loop (asyncio or uvloop){hint}")


def _in_trio() -> bool:
    """True inside ``trio.run()`` (looked up only if trio was imported: the engine does not depend on it)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True
