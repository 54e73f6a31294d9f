"""The keys service's admin API (operator bearer token): look at, revoke, suspend, resume,
rotate and expire keys."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError, bearer_token_guard
from tollgate_shared.runtime import Runtime

from . import repo
from .api import key_body
from .domain import KeyNotFound, KeyRevokedError, RotationRefused
from .handlers import KeySecrets, revoke_key, rotate_key, set_key_expiry, set_key_status


class RevokeRequest(BaseModel):
    reason: str = Field(default="admin", max_length=200)


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    grace_s: float = Field(default=24 * 3600, ge=0, le=90 * 86400, alias="graceSeconds")


class ExpiryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    expires_at: AwareDatetime | None = Field(alias="expiresAt")


def router(runtime: Runtime, secrets: KeySecrets, admin_token: str) -> APIRouter:
    r = APIRouter(dependencies=[Depends(bearer_token_guard(admin_token))])

    @asynccontextmanager
    async def change() -> AsyncIterator[asyncpg.Connection]:
        """A transaction for one admin change, its refusals answered with their status."""
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                yield conn
        except KeyNotFound as exc:
            raise ApiError(404, "key_not_found", str(exc)) from None
        except KeyRevokedError as exc:
            raise ApiError(409, "key_revoked", str(exc)) from None

    @r.get("/v1/admin/accounts/{account_id}/credits")
    async def credits(account_id: str) -> dict[str, Any]:
        """The keys service's view of the account's prepaid credits, and what it rests on."""
        async with runtime.pool.acquire() as conn:
            row = await repo.credits_view(conn, account_id)
        if row is None:
            raise ApiError(404, "account_not_found", f"no prepaid credits known for {account_id!r}")
        return {
            "account_id": account_id,
            "available": row["available"],
            "ledger_available": row["ledger_available"],
            "ledger_version": row["ledger_version"],
            "ledger_usage_total": row["ledger_usage_total"],
            "consumed_total": row["consumed_total"],
            "in_flight": row["consumed_total"] - row["ledger_usage_total"],
        }

    @r.get("/v1/admin/accounts/{account_id}/keys")
    async def list_keys(account_id: str) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            keys = await repo.list_for_account(conn, account_id)
        return {"accountId": account_id, "keys": [key_body(k) for k in keys]}

    @r.post("/v1/admin/keys/{key_id}/revoke")
    async def revoke(key_id: UUID, body: RevokeRequest | None = None) -> dict[str, Any]:
        async with change() as conn:
            return key_body(await revoke_key(key_id, (body or RevokeRequest()).reason, conn))

    @r.post("/v1/admin/keys/{key_id}/suspend")
    async def suspend(key_id: UUID) -> dict[str, Any]:
        async with change() as conn:
            return key_body(await set_key_status(key_id, "suspended", conn))

    @r.post("/v1/admin/keys/{key_id}/resume")
    async def resume(key_id: UUID) -> dict[str, Any]:
        async with change() as conn:
            return key_body(await set_key_status(key_id, "active", conn))

    @r.post("/v1/admin/keys/{key_id}/rotate")
    async def rotate(key_id: UUID, body: RotateRequest | None = None) -> dict[str, Any]:
        """A successor key, emailed to the customer; the old one keeps working for the grace."""
        grace = (body or RotateRequest()).grace_s
        try:
            async with change() as conn:
                new = await rotate_key(key_id, grace, conn, secrets)
        except RotationRefused as exc:
            raise ApiError(409, str(exc), f"key {key_id} cannot be rotated ({exc})") from None
        return {"rotated": str(key_id), "graceSeconds": grace, "successor": key_body(new)}

    @r.post("/v1/admin/keys/{key_id}/expiry")
    async def expiry(key_id: UUID, body: ExpiryRequest) -> dict[str, Any]:
        """Set (or clear, with null) the moment the key stops working."""
        async with change() as conn:
            return key_body(await set_key_expiry(key_id, body.expires_at, conn))

    return r
