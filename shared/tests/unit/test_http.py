"""The HTTP conventions every listener shares: what RequestGuard refuses before a route
reads anything, and how errors are answered."""

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import Field, SecretStr

from tollgate_shared.auth import Caller, Tokens, staff
from tollgate_shared.http import Instant, RequestBody, RequestGuard, Text, install_error_handlers

OPERATOR = "3f9a7c1e8b2d4f6a0c5e7b9d1f3a5c7e"
OPERATORS = staff(Tokens(SecretStr(f"alice:{OPERATOR}")))


class Note(RequestBody):
    text: Text = Field(max_length=100)
    at: Instant | None = None
    count: int = 0


def app() -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)

    @api.post("/notes")
    async def note(body: Note) -> dict[str, Any]:
        return {"text": body.text}

    @api.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(5)
        return {"late": "yes"}

    @api.get("/pool-exhausted")
    async def exhausted() -> None:
        raise TimeoutError  # what asyncpg's acquire raises after its timeout

    @api.get("/statement-timeout")
    async def canceled() -> None:
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")

    @api.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @api.get("/ops")
    async def ops(caller: Annotated[Caller, Depends(OPERATORS)]) -> dict[str, str]:
        return {"who": caller.name}

    return api


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    guarded = RequestGuard(app(), max_body=2048, deadline_s=0.5)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guarded, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        yield client


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


class TestRequestGuard:
    async def test_a_body_over_the_cap_is_413_whether_declared_or_streamed(self, http: httpx.AsyncClient) -> None:
        assert code(await http.post("/notes", content=b"x" * 3000)) == (413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 500

        assert code(await http.post("/notes", content=chunks())) == (413, "payload_too_large")

    @pytest.mark.parametrize("path", ["/notes%00x", "/x/%1b[2J", "/notes?q=a%00b", "/notes?" + "q=" + "a" * 300])
    async def test_control_characters_or_overlong_parts_of_path_or_query_are_422(
        self, http: httpx.AsyncClient, path: str
    ) -> None:
        assert code(await http.get(path)) == (422, "invalid_request")

    async def test_a_request_past_its_deadline_is_503_with_retry_after(self, http: httpx.AsyncClient) -> None:
        r = await http.get("/slow")
        assert code(r) == (503, "deadline_exceeded")
        assert r.headers["retry-after"] == "1"


class TestBodies:
    @pytest.mark.parametrize(
        "body",
        [
            {"text": "a\u0000b"},
            {"text": "line\nbreak"},
            {"text": "\ud800"},  # an unpaired surrogate: not even UTF-8
            {"text": "x" * 101},
            {"text": "ok", "at": 0},  # a number is not a time
            {"text": "ok", "at": "2026-12-01T00:00:00"},  # a time without its offset
            {"text": "ok", "count": False},  # strict: no false for 0
            {"text": "ok", "count": "1"},
            {"text": "ok", "extra": 1},
        ],
    )
    async def test_what_breaks_a_field_is_422_naming_it(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        import json

        r = await http.post("/notes", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert code(r) == (422, "invalid_request"), r.text
        assert r.json()["error"]["details"]

    async def test_good_text_and_times_pass(self, http: httpx.AsyncClient) -> None:
        r = await http.post("/notes", json={"text": "héllo wörld ✓", "at": "2026-12-01T00:00:00Z", "count": 2})
        assert r.status_code == 200


class TestErrors:
    @pytest.mark.parametrize("path", ["/pool-exhausted", "/statement-timeout"])
    async def test_a_busy_database_is_503_with_retry_after(self, http: httpx.AsyncClient, path: str) -> None:
        r = await http.get(path)
        assert code(r) == (503, "unavailable")
        assert r.headers["retry-after"] == "1"

    async def test_a_bug_is_500_and_says_nothing_of_itself(self, http: httpx.AsyncClient) -> None:
        r = await http.get("/broken")
        assert code(r) == (500, "internal_error")
        assert "a bug" not in r.text

    async def test_a_method_the_path_lacks_is_405_with_allow(self, http: httpx.AsyncClient) -> None:
        r = await http.delete("/notes")
        assert code(r) == (405, "method_not_allowed")
        assert r.headers["allow"] == "POST"


class TestStaffGuard:
    @pytest.mark.parametrize("header", [None, "Bearer nope", f"Basic {OPERATOR}", f"Bearer {OPERATOR}x", "Bearer "])
    async def test_anything_but_a_named_token_is_401(self, http: httpx.AsyncClient, header: str | None) -> None:
        r = await http.get("/ops", headers={"Authorization": header} if header else {})
        assert code(r) == (401, "unauthorized")

    async def test_the_token_names_its_caller(self, http: httpx.AsyncClient) -> None:
        r = await http.get("/ops", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert r.json() == {"who": "alice"}
