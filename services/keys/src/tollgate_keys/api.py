"""The keys service's HTTP edge for everyone: validate (public), and a customer's own keys."""

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from tollgate_shared.http import ApiError
from tollgate_shared.runtime import Runtime

from . import keyformat, metrics, repo
from .batcher import Batcher
from .handlers import KeySecrets, Validate, Verdict, validate_key

MAX_UNITS = 1_000_000


class ValidateRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    api_key: str = Field(alias="apiKey", min_length=1, max_length=256)
    units: int = Field(default=1, ge=1, le=MAX_UNITS, strict=True)
    consume: bool = Field(default=True, strict=True)
    route: str | None = Field(default=None, max_length=256)
    method: str | None = Field(default=None, max_length=16)
    status: int | None = Field(default=None, ge=100, le=599)


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


def router(runtime: Runtime, secrets: KeySecrets, batcher: Batcher) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/keys/validate")
    async def validate(body: ValidateRequest) -> dict[str, Any]:
        """Served by the fast path in front of this app (fastpath.py); declared here for the docs."""
        return await answer(body, runtime, secrets, batcher)

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

    return r
