"""The admin listener's audit log against real PostgreSQL: a call that changes something
is recorded before it acts, or does not act."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, SecretStr
from starlette.types import Scope

from tollgate_shared.audit import AuditLog, AuditWriter
from tollgate_shared.auth import Tokens, staff, staff_on_scope
from tollgate_shared.fastpath import Answer, FastRoute
from tollgate_shared.http import install_error_handlers

MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
TOKEN = "3f9a7c1e8b2d4f6a0c5e7b9d1f3a5c7e"
ALICE = {"authorization": f"Bearer {TOKEN}"}
TOKENS = Tokens(SecretStr(f"alice:{TOKEN}"))


class Act(BaseModel):
    what: str


class Admin:
    """An admin listener whose handlers note the audit rows already committed when they run."""

    def __init__(self, pool: asyncpg.Pool, writer: AuditWriter) -> None:
        self.pool, self.writer = pool, writer
        self.seen_by_handler: list[list[tuple[Any, ...]]] = []
        router = APIRouter(dependencies=[Depends(staff(TOKENS))])
        router.post("/v1/act", status_code=201)(self.act)
        router.get("/v1/look")(self.look)
        api = FastAPI()
        install_error_handlers(api)
        api.include_router(router)
        api.add_middleware(AuditLog, writer=writer)
        self.app = FastRoute(
            api, method="POST", path="/v1/fast", model=Act, handle=self.fast, guard=staff_on_scope(TOKENS), audit=writer
        )

    async def committed(self, path: str) -> list[tuple[Any, ...]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT caller, audience, method, status FROM audit_log WHERE path = $1", path)
        return [tuple(r.values()) for r in rows]

    async def act(self, body: Act) -> dict[str, str]:
        self.seen_by_handler.append(await self.committed("/v1/act"))
        return {"did": body.what}

    async def look(self) -> dict[str, str]:
        return {"saw": "nothing changed"}

    async def fast(self, body: Act, _scope: Scope) -> Answer:
        self.seen_by_handler.append(await self.committed("/v1/fast"))
        return 201, {"did": body.what}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://admin")


async def rows(pool: asyncpg.Pool, path: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT request, caller, status FROM audit_log WHERE path = $1 ORDER BY id", path)


async def test_a_change_is_recorded_before_it_acts_and_its_outcome_after(private_schema: MakePool) -> None:
    pool = await private_schema("keys")
    admin = Admin(pool, AuditWriter(lambda: pool))
    async with admin.client() as http:
        for path in ("/v1/act", "/v1/fast"):
            answer = await http.post(path, json={"what": "grant"}, headers=ALICE)
            assert answer.status_code == 201, answer.text
    await admin.writer.drain()
    # Each handler ran with its intent already committed: who, what, no outcome yet.
    assert admin.seen_by_handler == [[("alice", "operator", "POST", None)], [("alice", "operator", "POST", None)]]
    for path in ("/v1/act", "/v1/fast"):
        intent, outcome = await rows(pool, path)
        assert (intent["caller"], intent["status"]) == ("alice", None)
        assert (outcome["caller"], outcome["status"]) == ("alice", 201)
        assert intent["request"] == outcome["request"] is not None


async def test_a_read_and_a_refused_call_are_recorded_once_after_the_answer(private_schema: MakePool) -> None:
    pool = await private_schema("keys")
    admin = Admin(pool, AuditWriter(lambda: pool))
    async with admin.client() as http:
        assert (await http.get("/v1/look", headers=ALICE)).status_code == 200
        assert (await http.post("/v1/act", json={"what": "grant"})).status_code == 401
        assert (await http.post("/v1/fast", json={"what": "grant"})).status_code == 401
    await admin.writer.drain()
    assert [(r["caller"], r["status"]) for r in await rows(pool, "/v1/look")] == [("alice", 200)]
    assert [(r["caller"], r["status"]) for r in await rows(pool, "/v1/act")] == [("anonymous", 401)]
    assert [(r["caller"], r["status"]) for r in await rows(pool, "/v1/fast")] == [("anonymous", 401)]
    assert admin.seen_by_handler == []


async def test_a_change_that_cannot_be_recorded_is_not_made(private_schema: MakePool) -> None:
    pool = await private_schema("keys")
    async with pool.acquire() as conn:  # the audit table is gone for this listener: every insert fails
        await conn.execute("ALTER TABLE audit_log RENAME TO audit_log_away")
    admin = Admin(pool, AuditWriter(lambda: pool))
    admin.committed = _nothing  # type: ignore[method-assign]
    async with admin.client() as http:
        for path in ("/v1/act", "/v1/fast"):
            answer = await http.post(path, json={"what": "grant"}, headers=ALICE)
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "unavailable"
        assert (await http.get("/v1/look", headers=ALICE)).status_code == 200  # a read needs no record first
    assert admin.seen_by_handler == []


async def _nothing(_path: str) -> list[tuple[Any, ...]]:
    return []
