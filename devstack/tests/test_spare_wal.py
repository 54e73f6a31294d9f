"""bench-keys times no phase on a cluster that still has to create its WAL segments."""

import secrets
import shutil
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tollgate_devstack import infra
from tollgate_devstack.bench.keys import SPARE_WAL, settle
from tollgate_devstack.config import REPO_ROOT, StackConfig
from tollgate_devstack.processes import Processes, free_port

# Beside the test stack's own: a directory the `postgres` user can reach when we are root.
TEST_STACK_DIR = REPO_ROOT / ".stack-test"


@pytest.fixture
async def new_cluster() -> AsyncIterator[asyncpg.Pool]:
    """A cluster just made by initdb, as the first bench-keys run on a fresh clone has."""
    state = TEST_STACK_DIR / f"fresh-wal-{secrets.token_hex(4)}"
    cfg = StackConfig.from_env({"TOLLGATE_STACK_DIR": str(state), "TOLLGATE_PORT_POSTGRES": str(free_port())})
    procs = Processes(cfg.state_dir)
    infra.start_postgres(cfg, procs)
    pool = await asyncpg.create_pool(cfg.database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()
        procs.stop("postgres")
        shutil.rmtree(state)


async def wal_files(pool: asyncpg.Pool) -> tuple[list[str], int]:
    """The segment files in pg_wal, and how many lie ahead of the one in use."""
    rows = await pool.fetch(
        "SELECT name, name > pg_walfile_name(pg_current_wal_lsn()) AS ahead FROM pg_ls_waldir() "
        "WHERE name ~ '^[0-9A-F]{24}$' ORDER BY name"
    )
    return [r["name"] for r in rows], sum(r["ahead"] for r in rows)


async def test_a_new_cluster_has_spare_segments_after_the_first_settle(new_cluster: asyncpg.Pool) -> None:
    _, ahead = await wal_files(new_cluster)
    assert ahead == 0  # what a checkpoint alone would leave: nothing to recycle
    await settle(new_cluster)
    files, ahead = await wal_files(new_cluster)
    assert ahead >= SPARE_WAL
    await settle(new_cluster)
    assert await wal_files(new_cluster) == (files, ahead)  # with enough, it makes no more
