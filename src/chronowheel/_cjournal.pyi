"""Types of the Cython module (``native/_cjournal.pyx``): the journal decoder's per-record loops.

Each is the twin of a Python loop: :func:`walk` of
``chronowheel._journal.format.walk_frames``, :func:`sound_jobs` of
``chronowheel._journal.schema.sound_jobs_py``, :class:`PlainJobs` of
``chronowheel._journal.replay.PlainJobsPy``. ``python -m mypy.stubtest
chronowheel._cjournal`` checks this against the built module in ``make test``.
"""

from typing import Any, final

def walk(
    buffer: bytearray, seed: int, seq: int, base: int, record: type[Any]
) -> tuple[list[Any], list[dict[str, Any]], int, int, tuple[int, str, bool] | None]: ...
def sound_jobs(records: list[dict[str, Any]], start: int) -> int: ...

@final
class PlainJobs:
    def __init__(self, job: type) -> None: ...
    @property
    def cloning(self) -> bool: ...
    def replay(self, records: list[dict[str, Any]], start: int, live: dict[str, Any], tasks: dict[str, str]) -> int: ...
    def columns(self, record: dict[str, Any], start: int, live: dict[str, Any], tasks: dict[str, str]) -> int: ...
