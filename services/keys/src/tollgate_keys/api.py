"""The keys service's public edge: validate (anyone), and a customer's own keys (by one of
their keys)."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field

from tollgate_shared.auth import Tokens, bearer
from tollgate_shared.http import ApiError, RequestBody, Text
from tollgate_shared.runtime import Runtime

from . import keyformat, metrics, repo
from .batcher import Batcher, Overloaded
from .handlers import KeySecrets, Validate, Verdict, find_live_key, validate_key

MAX_UNITS = 1_000_000
GATEWAY_HEADER = b"x-tollgate-gateway"


class ValidateRequest(RequestBody):
    api_key: Text = Field(alias="apiKey", min_length=1, max_length=256)
    units: int = Field(default=1, ge=1, le=MAX_UNITS, strict=True)
    consume: bool = Field(default=True, strict=True)
    # What the call was, for meters that bill by it; only from the gateway, if one is configured.
    route: Text | None = Field(default=None, max_length=256)
    method: Text | None = Field(default=None, max_length=16)
    status: int | None = Field(default=None, ge=100, le=599)


class Quota(BaseModel):
    limit: int
    used: int
    remaining: int


class RateLimit(BaseModel):
    limit: int
    remaining: int | None
    resetAt: str  # noqa: N815 - the wire name


class ValidateAnswer(BaseModel):
    isValid: bool  # noqa: N815
    unitsConsumed: int  # noqa: N815
    reason: str | None = None
    keyId: str | None = None  # noqa: N815
    quota: Quota | None = None
    expiresAt: str | None = None  # noqa: N815
    rateLimit: RateLimit | None = None  # noqa: N815


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


class Validator:
    """What answers POST /v1/keys/validate, in the fast path and in the app alike."""

    def __init__(self, runtime: Runtime, secrets: KeySecrets, batcher: Batcher, gateways: Tokens) -> None:
        self.runtime, self.secrets, self.batcher, self.gateways = runtime, secrets, batcher, gateways

    async def __call__(self, body: ValidateRequest, headers: dict[bytes, bytes]) -> dict[str, Any]:
        describes_call = body.route is not None or body.method is not None or body.status is not None
        if self.gateways and describes_call and not self._from_gateway(headers):
            raise ApiError(403, "gateway_only", "route, method and status are taken only from the API gateway")
        cmd = Validate(body.api_key, body.units, body.consume, body.route, body.method, body.status)
        try:
            verdict = await validate_key(cmd, self.runtime.pool, self.secrets, self.batcher)
        except Overloaded:
            raise ApiError(503, "overloaded", "too many validations waiting; retry", {"Retry-After": "1"}) from None
        metrics.answered(verdict.reason or "ok", cmd.consume)
        return verdict_body(verdict)

    def _from_gateway(self, headers: dict[bytes, bytes]) -> bool:
        presented = headers.get(GATEWAY_HEADER, b"").decode("latin-1")
        return bool(presented) and self.gateways.who(presented) is not None


class KeyView(BaseModel):
    id: UUID
    accountId: str  # noqa: N815
    display: str
    plan: str
    billing: str
    status: str
    features: list[str]
    quota: dict[str, int] | None
    expiresAt: datetime | None  # noqa: N815


class KeyList(BaseModel):
    accountId: str  # noqa: N815
    keys: list[KeyView]


def key_body(k: repo.KeyRow) -> KeyView:
    return KeyView(
        id=k.id,
        accountId=k.account_id,
        display=k.key_display,
        plan=k.plan,
        billing=k.billing,
        status=k.status,
        features=k.features,
        quota=None if k.quota_limit is None else {"limit": k.quota_limit, "used": k.quota_used},
        expiresAt=k.expires_at,
    )


def router(runtime: Runtime, secrets: KeySecrets, validator: Validator) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/keys/validate", tags=["public"])
    async def validate(body: ValidateRequest) -> ValidateAnswer:
        """Whether a key may be used for `units` now, consuming them if asked. Served by the
        fast path in front of this app (fastpath.py); declared here for the docs."""
        return ValidateAnswer.model_validate(await validator(body, {}))

    @r.get("/v1/keys", tags=["customer"])
    async def my_keys(authorization: Annotated[str | None, Header()] = None) -> KeyList:
        """Self-service: a customer lists their account's keys (prefix and last four only),
        authenticated by any live key of theirs as `Authorization: Bearer <api key>`."""
        api_key = bearer(authorization)
        if not keyformat.is_well_formed(api_key):
            raise ApiError(401, "unauthorized", "send one of your API keys as a bearer token")
        async with runtime.pool.acquire() as conn:
            me = await find_live_key(conn, secrets, api_key)
            if me is None:
                raise ApiError(401, "unauthorized", "that key is unknown, revoked or expired")
            keys = await repo.list_for_account(conn, me.account_id)
        return KeyList(accountId=me.account_id, keys=[key_body(k) for k in keys])

    return r
