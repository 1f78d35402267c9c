"""The journal's native twins (``chronowheel._cjournal``, ``_cframe``), each None where not built or switched off.

Picked here, once, as :mod:`chronowheel._selection` picks the wheel:
:mod:`.format` (the frame walk, and the writer's framing), :mod:`.schema` (the
usual record's check) and :mod:`.replay` (the usual record's ``Job``) each run
the native twin of their loop when this holds it, and their own Python loop
otherwise (``CHRONOWHEEL_NO_EXTENSIONS=1``, or no compiler).
tests/test_native_decoder.py and tests/test_native_durable_path.py hold each
pair alike.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["PlainJobs", "frame_records", "settle", "sound_jobs", "walk"]  # each None without its native module

if TYPE_CHECKING:
    from .._cjournal import PlainJobs, sound_jobs, walk
elif os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
    PlainJobs = sound_jobs = walk = None
else:
    try:
        from .._cjournal import PlainJobs, sound_jobs, walk
    except ImportError:
        PlainJobs = sound_jobs = walk = None

# The writer's framing of a whole hand-over, CRCs without the GIL, and the loop's settling of a durable hand-over's
# commits (native/_cframe.pyx, a module of its own: it may build where the decoder does not); None:
# ``format.frame_records`` frames and ``writer._settle`` settles in Python.
if TYPE_CHECKING:
    from .._cframe import frame_records, settle
elif os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
    frame_records = settle = None
else:
    try:
        from .._cframe import frame_records, settle
    except ImportError:
        frame_records = settle = None
