"""The demo runs as ``make demo`` runs it and shows the operator's surface (real clock: ``make soak`` only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"

# What the demo must show: a query, a pause (in the query), a result, a chain's result, a rate-limited pool.
SHOWN = [
    "query remind:* by deadline: [('remind:eve', 'cancelled'), ('remind:zoe', 'paused'),",
    "result: 21 unread; then digest sent",
    "job: remind zoe",  # resumed: it fires
    "rate-limited pool (5 a second): 12 calls due at once started at +0.0 0.0 0.0 0.0 0.0 1.0 1.0 1.0 1.0 1.0 2.0",
    "none early: True",
]


@pytest.mark.slow
def test_the_demo_shows_the_operators_surface() -> None:
    shown = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120, check=True)
    missing = [line for line in SHOWN if line not in shown.stdout]
    assert not missing, shown.stdout
