"""The keys service's HTTP edge: validate (public), and the admin API (bearer token)."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError, bearer_token_guard
from tollgate_shared.runtime import Runtime

from . import keyformat, metrics, repo
from .batcher import Batcher
from .handlers import KeySecrets, RotationRefused, Validate, Verdict, revoke_key, rotate_key, validate_key

MAX_UNITS = 1_000_000


class ValidateRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    api_key: str = Field(alias="apiKey", min_length=1, max_length=256)
    units: int = Field(default=1, ge=1, le=MAX_UNITS, strict=True)
    consume: bool = Field(default=True, strict=True)
    route: str | None = Field(default=None, max_length=256)
    method: str | None = Field(default=None, max_length=16)
    status: int | None = Field(default=None, ge=100, le=599)


class RevokeRequest(BaseModel):
    reason: str = Field(default="admin", max_length=200)


def verdict_body(v: Verdict) -> dict[str, Any]:
    body: dict[str, Any] = {"isValid": v.valid, "unitsConsumed": v.consumed}
    if v.reason:
        body["reason"] = v.reason
    k = v.state
    if k is not None:
        body["keyId"] = str(k.key_id)
        body["quota"] = (
            None
            if k.quota_limit is None or k.quota_used is None
            else {"limit": k.quota_limit, "used": k.quota_used, "remaining": max(k.quota_limit - k.quota_used, 0)}
        )
        body["expiresAt"] = k.expires_at.isoformat() if k.expires_at else None
        if k.rate_limit is not None and k.rate_reset is not None:
            body["rateLimit"] = {
                "limit": k.rate_limit,
                "remaining": k.rate_remaining,
                "resetAt": k.rate_reset.isoformat(),
            }
    return body


async def answer(body: ValidateRequest, runtime: Runtime, secrets: KeySecrets, batcher: Batcher) -> dict[str, Any]:
    cmd = Validate(body.api_key, body.units, body.consume, body.route, body.method, body.status)
    verdict = await validate_key(cmd, runtime.pool, secrets, batcher)
    metrics.answered(verdict.reason or "ok", cmd.consume)
    return verdict_body(verdict)


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    grace_s: float = Field(default=24 * 3600, ge=0, le=90 * 86400, alias="graceSeconds")


class ExpiryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    expires_at: AwareDatetime | None = Field(alias="expiresAt")


def key_body(k: repo.KeyRow) -> dict[str, Any]:
    return {
        "id": str(k.id),
        "accountId": k.account_id,
        "display": k.key_display,
        "plan": k.plan,
        "billing": k.billing,
        "status": k.status,
        "features": k.features,
        "quota": None if k.quota_limit is None else {"limit": k.quota_limit, "used": k.quota_used},
        "expiresAt": k.expires_at.isoformat() if k.expires_at else None,
    }


def router(runtime: Runtime, secrets: KeySecrets, admin_token: str, batcher: Batcher) -> APIRouter:
    r = APIRouter()

    admin = [Depends(bearer_token_guard(admin_token))]

    @r.post("/v1/keys/validate")
    async def validate(body: ValidateRequest) -> dict[str, Any]:
        """Served by the fast path in front of this app (fastpath.py); declared here for the docs."""
        return await answer(body, runtime, secrets, batcher)

    @r.get("/v1/admin/accounts/{account_id}/credits", dependencies=admin)
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

    @r.post("/v1/admin/keys/{key_id}/revoke", dependencies=admin)
    async def revoke(key_id: UUID, body: RevokeRequest | None = None) -> dict[str, Any]:
        key = await revoke_key(key_id, (body or RevokeRequest()).reason, runtime.pool)
        if key is None:
            raise ApiError(404, "key_not_found", f"no key {key_id}")
        return key_body(key)

    @r.post("/v1/admin/keys/{key_id}/suspend", dependencies=admin)
    async def suspend(key_id: UUID) -> dict[str, Any]:
        return await _set_status(key_id, "suspended")

    @r.post("/v1/admin/keys/{key_id}/resume", dependencies=admin)
    async def resume(key_id: UUID) -> dict[str, Any]:
        return await _set_status(key_id, "active")

    async def _set_status(key_id: UUID, status: str) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            key = await repo.set_status(conn, key_id, status)
            if key is None:
                existing = await repo.find_by_id(conn, key_id)
                if existing is None:
                    raise ApiError(404, "key_not_found", f"no key {key_id}")
                raise ApiError(409, "key_revoked", "a revoked key cannot be suspended or resumed")
        return key_body(key)

    @r.post("/v1/admin/keys/{key_id}/rotate", dependencies=admin)
    async def rotate(key_id: UUID, body: RotateRequest | None = None) -> dict[str, Any]:
        """A successor key, emailed to the customer; the old one keeps working for the grace."""
        grace = (body or RotateRequest()).grace_s
        try:
            new = await rotate_key(key_id, grace, runtime.pool, secrets)
        except RotationRefused as exc:
            status = 404 if str(exc) == "key_not_found" else 409
            raise ApiError(status, str(exc), f"key {key_id} cannot be rotated ({exc})") from None
        return {"rotated": str(key_id), "graceSeconds": grace, "successor": key_body(new)}

    @r.post("/v1/admin/keys/{key_id}/expiry", dependencies=admin)
    async def expiry(key_id: UUID, body: ExpiryRequest) -> dict[str, Any]:
        """Set (or clear, with null) the moment the key stops working."""
        async with runtime.pool.acquire() as conn:
            key = await repo.set_expiry(conn, key_id, body.expires_at)
            if key is None:
                if await repo.find_by_id(conn, key_id) is None:
                    raise ApiError(404, "key_not_found", f"no key {key_id}")
                raise ApiError(409, "key_revoked", "a revoked key stays revoked")
        return key_body(key)

    @r.get("/v1/keys")
    async def my_keys(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """Self-service: a customer lists their account's keys (prefix and last four only),
        authenticated by any live key of theirs as `Authorization: Bearer <api key>`."""
        scheme, _, api_key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not keyformat.is_well_formed(api_key):
            raise ApiError(401, "unauthorized", "send one of your API keys as a bearer token")
        async with runtime.pool.acquire() as conn:
            me = await repo.find_live_by_hash(conn, keyformat.hash_key(secrets.hash_secret, api_key))
            if me is None:
                raise ApiError(401, "unauthorized", "that key is unknown, revoked or expired")
            keys = await repo.list_for_account(conn, me.account_id)
        return {"accountId": me.account_id, "keys": [key_body(k) for k in keys]}

    @r.get("/v1/admin/accounts/{account_id}/keys", dependencies=admin)
    async def list_keys(account_id: str) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            keys = await repo.list_for_account(conn, account_id)
        return {"accountId": account_id, "keys": [key_body(k) for k in keys]}

    return r
