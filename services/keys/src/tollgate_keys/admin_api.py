"""The keys service's admin listener: operators (and Tollgate's portal, acting for a
customer) look at, revoke, suspend, resume, rotate and expire keys; other services ask
whose an API key is."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, Field

from tollgate_shared.auth import Tokens, internal, staff
from tollgate_shared.http import ApiError, RequestBody, Text
from tollgate_shared.runtime import Runtime

from . import keyformat, repo
from .api import KeyList, KeyView, key_body
from .domain import KeyNotFound, KeyRevokedError, RotationRefused
from .handlers import (
    KeySecrets,
    create_key,
    find_live_key,
    revoke_key,
    rotate_key,
    set_key_expiry,
    set_key_status,
)


class RevokeRequest(RequestBody):
    reason: Text = Field(default="admin", min_length=1, max_length=200)


class RotateRequest(RequestBody):
    grace_s: float = Field(default=24 * 3600, ge=0, le=90 * 86400, alias="graceSeconds")
    show: bool = Field(default=False, description="Answer the successor's plaintext (once) instead of emailing it")


class ExpiryRequest(RequestBody):
    expires_at: AwareDatetime | None = Field(alias="expiresAt")


class Rotated(BaseModel):
    rotated: UUID
    graceSeconds: float  # noqa: N815
    successor: KeyView
    apiKey: str | None = Field(default=None, description="The successor's plaintext, if asked to be shown")  # noqa: N815


class Created(BaseModel):
    key: KeyView
    apiKey: str = Field(description="The new key's plaintext: shown this once, kept nowhere")  # noqa: N815


class CreditsView(BaseModel):
    account_id: str
    available: int | None
    ledger_available: int | None
    ledger_version: int
    ledger_usage_total: int
    consumed_total: int
    in_flight: int


class IdentifyRequest(RequestBody):
    api_key: Text = Field(alias="apiKey", min_length=1, max_length=256)


class Identified(BaseModel):
    accountId: str | None  # noqa: N815


class SecretKeys(BaseModel):
    secret_id: str | None = Field(
        description="The hash secret's fingerprint; null: keys issued before fingerprints were kept"
    )
    role: Literal["current", "previous", "unrecorded", "unknown"] = Field(
        description="unknown: a secret this service no longer has, so those keys no longer work"
    )
    live_keys: int


class HashSecrets(BaseModel):
    secrets: list[SecretKeys]


class Sealed(BaseModel):
    sealed: str = Field(description="The new key's plaintext, as a Fernet token of the delivery keys")


def router(runtime: Runtime, secrets: KeySecrets, operators: Tokens, internals: Tokens) -> APIRouter:
    r = APIRouter(dependencies=[Depends(staff(operators, internals))], tags=["operator", "internal"])

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
    async def credits(account_id: str) -> CreditsView:
        """The keys service's view of the account's prepaid credits, and what it rests on."""
        async with runtime.pool.acquire() as conn:
            row = await repo.credits_view(conn, account_id)
        if row is None:
            raise ApiError(404, "account_not_found", f"no prepaid credits known for {account_id!r}")
        return CreditsView(
            account_id=account_id,
            available=row["available"],
            ledger_available=row["ledger_available"],
            ledger_version=row["ledger_version"],
            ledger_usage_total=row["ledger_usage_total"],
            consumed_total=row["consumed_total"],
            in_flight=row["consumed_total"] - row["ledger_usage_total"],
        )

    @r.get("/v1/admin/hash-secrets")
    async def hash_secrets() -> HashSecrets:
        """Live keys under each hash secret. After a rotation a key moves to the current secret
        the first time it is used; drop a previous secret once no live key is under it."""
        async with runtime.pool.acquire() as conn:
            counts = await repo.live_keys_by_secret(conn)
        roles: dict[str | None, str] = {secrets.hash_secret_id: "current"}
        roles |= {keyformat.secret_id(s): "previous" for s in secrets.previous_hash_secrets}
        roles |= {i: "unrecorded" if i is None else "unknown" for i in counts if i not in roles}
        return HashSecrets(
            secrets=[SecretKeys(secret_id=i, role=role, live_keys=counts.get(i, 0)) for i, role in roles.items()]  # type: ignore[arg-type]
        )

    @r.get("/v1/admin/accounts/{account_id}/keys")
    async def list_keys(account_id: str) -> KeyList:
        """The account's keys, prefix and last four characters only."""
        async with runtime.pool.acquire() as conn:
            keys = await repo.list_for_account(conn, account_id)
        return KeyList(accountId=account_id, keys=[key_body(k) for k in keys])

    @r.post("/v1/admin/keys/{key_id}/revoke")
    async def revoke(key_id: UUID, body: RevokeRequest | None = None) -> KeyView:
        """Stop the key for good, with a reason."""
        async with change() as conn:
            return key_body(await revoke_key(key_id, (body or RevokeRequest()).reason, conn))

    @r.post("/v1/admin/keys/{key_id}/suspend")
    async def suspend(key_id: UUID) -> KeyView:
        """Stop the key until it is resumed (an operator's hold, apart from billing holds)."""
        async with change() as conn:
            return key_body(await set_key_status(key_id, "suspended", conn))

    @r.post("/v1/admin/keys/{key_id}/resume")
    async def resume(key_id: UUID) -> KeyView:
        """Lift an operator's suspension."""
        async with change() as conn:
            return key_body(await set_key_status(key_id, "active", conn))

    @r.post("/v1/admin/keys/{key_id}/rotate")
    async def rotate(key_id: UUID, body: RotateRequest | None = None) -> Rotated:
        """A successor key, emailed to the customer; the old one keeps working for the grace."""
        asked = body or RotateRequest()
        try:
            async with change() as conn:
                new, plaintext = await rotate_key(key_id, asked.grace_s, conn, secrets, show=asked.show)
        except RotationRefused as exc:
            raise ApiError(409, str(exc), f"key {key_id} cannot be rotated ({exc})") from None
        return Rotated(rotated=key_id, graceSeconds=asked.grace_s, successor=key_body(new), apiKey=plaintext)

    @r.post("/v1/admin/accounts/{account_id}/keys", status_code=201)
    async def create(account_id: str) -> Created:
        """Another key for an account that has bought something (its newest key's plan and
        limits); its plaintext is in this answer only."""
        async with runtime.pool.acquire() as conn, conn.transaction():
            try:
                new, plaintext = await create_key(account_id, conn, secrets)
            except KeyNotFound:
                raise ApiError(409, "nothing_bought", f"account {account_id!r} has no key to copy: buy first") from None
        return Created(key=key_body(new), apiKey=plaintext)

    @r.post("/v1/admin/keys/{key_id}/expiry")
    async def expiry(key_id: UUID, body: ExpiryRequest) -> KeyView:
        """Set (or clear, with null) the moment the key stops working."""
        async with change() as conn:
            return key_body(await set_key_expiry(key_id, body.expires_at, conn))

    return r


def internal_router(runtime: Runtime, secrets: KeySecrets, internals: Tokens) -> APIRouter:
    # A lookup, though POST (the key stays out of URLs and logs): audited after the answer.
    r = APIRouter(dependencies=[Depends(internal(internals, changes=False))], tags=["internal"])

    @r.post("/internal/v1/identify")
    async def identify(body: IdentifyRequest) -> Identified:
        """Whose account a live API key opens (null if none): how other services admit a
        customer to their own account's routes."""
        if not keyformat.is_well_formed(body.api_key):
            return Identified(accountId=None)
        async with runtime.pool.acquire() as conn:
            me = await find_live_key(conn, secrets, body.api_key)
        return Identified(accountId=me.account_id if me else None)

    return r


def deliveries_router(runtime: Runtime, internals: Tokens) -> APIRouter:
    """New keys' sealed plaintexts: for the notifier's token only."""
    r = APIRouter(dependencies=[Depends(internal(internals, only=frozenset({"notifier"})))], tags=["internal"])

    @r.get("/internal/v1/deliveries/{key_id}")
    async def delivery(key_id: UUID) -> Sealed:
        """A new key's plaintext, sealed, for the notifier to email; 404 once it was taken."""
        async with runtime.pool.acquire() as conn:
            sealed = await repo.sealed_delivery(conn, key_id)
        if sealed is None:
            raise ApiError(404, "delivery_not_found", f"no key {key_id} waiting to be delivered")
        return Sealed(sealed=sealed)

    @r.delete("/internal/v1/deliveries/{key_id}", status_code=204)
    async def delivered(key_id: UUID) -> None:
        """The notifier emailed it: the sealed plaintext is deleted (again: no harm)."""
        async with runtime.pool.acquire() as conn:
            await repo.delivered(conn, key_id)

    return r
