"""The decoder's native twins, from ``chronowheel._cjournal`` when it is built and extensions are on, else None.

Picked here, once, as :mod:`chronowheel._selection` picks the wheel:
:mod:`.format` (the frame walk), :mod:`.schema` (the usual record's check) and
:mod:`.replay` (the usual record's ``Job``) each run the native twin of their
loop when this holds it, and their own Python loop otherwise
(``CHRONOWHEEL_NO_EXTENSIONS=1``, or no compiler). tests/test_native_decoder.py
holds each pair alike.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["PlainJobs", "sound_jobs", "walk"]  # each None without the native module

if TYPE_CHECKING:
    from .._cjournal import PlainJobs, sound_jobs, walk
elif os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
    PlainJobs = sound_jobs = walk = None
else:
    try:
        from .._cjournal import PlainJobs, sound_jobs, walk
    except ImportError:
        PlainJobs = sound_jobs = walk = None
