from __future__ import annotations

from typing import Any

import pytest

from chronowheel._wheel import TimerWheel as PureWheel

WHEELS: dict[str, Any] = {"pure": PureWheel}


@pytest.fixture(params=sorted(WHEELS), scope="session")
def wheel_factory(request: pytest.FixtureRequest) -> Any:
    return WHEELS[request.param]
