from collections.abc import AsyncIterator
from typing import Any

import pytest

from tollgate_devstack.demo import Demo


@pytest.fixture
async def demo(stack: dict[str, Any]) -> AsyncIterator[Demo]:
    """The demo's steps as building blocks, talking to the test stack."""
    async with Demo(stack) as d:
        yield d
