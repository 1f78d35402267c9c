"""Which wheel is used: the pure one when the native extension does not import (no C compiler at install)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
sys.modules["chronowheel._cwheel"] = None  # what an install without a C compiler leaves: no extension
import chronowheel
from chronowheel import _selection, _wheel
print(chronowheel.WHEEL, _selection.WHEEL, _selection.TimerWheel is _wheel.TimerWheel)
"""


@pytest.mark.parametrize("forced", [False, True], ids=["extension-missing", "and-switched-off"])
def test_without_the_extension_the_pure_wheel_is_used(forced: bool) -> None:
    env = {key: value for key, value in os.environ.items() if key != "CHRONOWHEEL_NO_EXTENSIONS"}
    if forced:
        env["CHRONOWHEEL_NO_EXTENSIONS"] = "1"
    probe = [sys.executable, "-c", PROBE]
    result = subprocess.run(probe, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "pure", "True"]
