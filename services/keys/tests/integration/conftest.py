from collections.abc import Awaitable, Callable

import asyncpg
import pytest

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    """A fresh, migrated keys schema of the test's own."""
    return await private_schema("keys")
