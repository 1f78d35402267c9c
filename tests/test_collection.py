"""The suite's test ids and their order do not depend on the hash seed.

pytest-xdist's workers each collect the suite in their own process, with their own hash seed, and stop
the run when their lists differ: an id built from a set's order or an object's address breaks them. The
conftest refuses addresses at every collection, and `make test`'s workers compare their lists; this
(`make soak`: two more collections of the whole suite) does so under two fixed seeds, every time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def collected(seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_the_same_tests_are_collected_in_the_same_order_under_any_hash_seed() -> None:
    first, second = collected("1"), collected("2")
    assert any(nodeid.startswith("tests/test_collection.py::") for nodeid in first), first  # the whole suite
    assert first == second
