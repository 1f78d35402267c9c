"""chronowheel: an asyncio-native delay engine on a hierarchical timing wheel."""

from __future__ import annotations

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._cluster.config import Cluster as Cluster
from ._current import current_job as current_job
from ._engine import Engine as Engine
from ._errors import ChronowheelError as ChronowheelError
from ._errors import DuplicateKey as DuplicateKey
from ._errors import EngineClosed as EngineClosed
from ._errors import JobCancelled as JobCancelled
from ._errors import JobFailed as JobFailed
from ._errors import JournalCorrupt as JournalCorrupt
from ._errors import JournalFailed as JournalFailed
from ._errors import JournalLocked as JournalLocked
from ._errors import LeaseLost as LeaseLost
from ._errors import NotStarted as NotStarted
from ._errors import RecordedError as RecordedError
from ._errors import UnknownTask as UnknownTask
from ._job import Job as Job
from ._rate import Rate as Rate
from ._recurrence import Cron as Cron
from ._recurrence import Every as Every
from ._retry import Retry as Retry
from ._selection import WHEEL as WHEEL
from ._selection import TimerWheel as TimerWheel
from ._timers import TimerHandle as TimerHandle

__all__ = [
    "WHEEL",
    "current_job",
    "ChronowheelError",
    "Clock",
    "Cluster",
    "Cron",
    "DuplicateKey",
    "Engine",
    "EngineClosed",
    "Every",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JournalCorrupt",
    "JournalFailed",
    "JournalLocked",
    "LeaseLost",
    "NotStarted",
    "Rate",
    "RecordedError",
    "Retry",
    "SystemClock",
    "TimerHandle",
    "TimerWheel",
    "UnknownTask",
]

__version__ = "0.1.0"

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("chronowheel."):
        _obj.__module__ = "chronowheel"
del _name, _obj
