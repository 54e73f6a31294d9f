"""Issue and validate against a real PostgreSQL, including concurrent consumers and a
rotation of the hash secret."""

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID, uuid4

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet

from tollgate_keys import keyformat, repo
from tollgate_keys.batcher import Batcher, Request
from tollgate_keys.domain import Limits, RotationRefused
from tollgate_keys.handlers import (
    KeySecrets,
    Validate,
    Verdict,
    find_live_key,
    invoice_paid,
    issue_key,
    learn_balances,
    money_returned,
    payment_failed,
    revoke_key,
    rotate_key,
    set_key_status,
    validate_key,
)
from tollgate_shared.contracts import (
    BalanceUpdated,
    DisputeClosed,
    InvoicePaid,
    InvoicePaymentFailed,
    Money,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionStarted,
    UsageRecorded,
    credits_account,
    parse_usage,
)

Check = Callable[[Validate], Awaitable[Verdict]]
T = TypeVar("T")


async def in_tx(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work` in a transaction of its own, as a consumer's batch or an admin request runs it."""
    async with pool.acquire() as conn, conn.transaction():
        return await work(conn)


MakePool = Callable[[str], Awaitable[asyncpg.Pool]]
NO_LIMITS = Limits()
SECRETS = KeySecrets("test", b"integration-hash-secret", MultiFernet([Fernet(Fernet.generate_key())]))


@pytest.fixture
async def pool(private_schema: MakePool) -> asyncpg.Pool:
    return await private_schema("keys")


@pytest.fixture
async def validate(pool: asyncpg.Pool) -> AsyncIterator[Check]:
    batcher = Batcher(lambda: pool)
    batcher.start()

    async def check(cmd: Validate) -> Verdict:
        return await validate_key(cmd, pool, SECRETS, batcher)

    yield check
    await batcher.stop()


async def a_key(
    pool: asyncpg.Pool, quota: int | None = 100, limits: Limits = NO_LIMITS, under: KeySecrets = SECRETS
) -> str:
    """A key of a new account, prepaid with `quota` or metered without one, stored under
    `under`'s hash secret; its plaintext."""
    plaintext = keyformat.generate("test")
    async with pool.acquire() as conn:
        await repo.insert_key(
            conn,
            key_id=uuid4(),
            account_id=f"cus_{secrets.token_hex(4)}",
            key_hash=under.hashed(plaintext),
            hash_secret_id=under.hash_secret_id,
            key_display=keyformat.display(plaintext),
            plan="p",
            billing="prepaid" if quota else "metered",
            quota_limit=quota,
            features=[],
            source_ref=f"cs_{secrets.token_hex(6)}",
            limits=limits,
        )
    return plaintext


class TestIssue:
    async def test_one_key_per_checkout_session_and_only_its_hash_is_stored(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        fact = PaymentSucceeded(
            account_id="cus_issue",
            customer_email="a@example.com",
            plan="professional",
            product_name="Pro",
            credits=10_000,
            amount=Money(amount_minor=2500, currency="usd"),
            checkout_session_id=f"cs_{secrets.token_hex(6)}",
        )
        assert await in_tx(pool, lambda c: issue_key(fact, c, SECRETS)) is True
        assert await in_tx(pool, lambda c: issue_key(fact, c, SECRETS)) is False
        async with pool.acquire() as conn:
            outbox = await conn.fetch("SELECT payload FROM outbox")
            stored = await conn.fetchrow("SELECT * FROM keys")
            sealed = await conn.fetchval("SELECT sealed FROM key_deliveries WHERE key_id = $1", stored["id"])
        assert len(outbox) == 1
        plaintext = SECRETS.delivery.decrypt(sealed.encode()).decode()
        assert keyformat.is_well_formed(plaintext)
        assert stored["key_hash"] == keyformat.hash_key(SECRETS.hash_secret, plaintext)
        assert plaintext not in str(dict(stored))
        # The event announces the key; neither its plaintext nor its sealed form travels.
        assert plaintext not in str(outbox[0]["payload"]) and sealed not in str(outbox[0]["payload"])


class TestTopUp:
    def pack(self, account: str) -> PaymentSucceeded:
        return PaymentSucceeded(
            account_id=account,
            customer_email="a@example.com",
            plan="starter",
            product_name="Starter",
            credits=1_000,
            amount=Money(amount_minor=999, currency="usd"),
            checkout_session_id=f"cs_{secrets.token_hex(6)}",
        )

    async def test_a_second_pack_tops_up_the_key_once(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        assert await in_tx(pool, lambda c: issue_key(self.pack(account), c, SECRETS)) is True
        again = self.pack(account)
        assert await in_tx(pool, lambda c: issue_key(again, c, SECRETS)) is False  # no new key...
        assert await in_tx(pool, lambda c: issue_key(again, c, SECRETS)) is False  # ...and a redelivery adds nothing
        async with pool.acquire() as conn:
            keys = await conn.fetch("SELECT quota_limit FROM keys WHERE account_id = $1", account)
            events = await conn.fetch("SELECT payload->>'event_type' AS t FROM outbox ORDER BY id")
        assert [k["quota_limit"] for k in keys] == [2_000]
        assert [e["t"] for e in events] == ["KeyIssued", "KeyToppedUp"]


class TestEntitlement:
    """A prepaid key works while its account has a pack whose money is still ours; a
    metered key while its subscription lasts; payments never lift an operator's hold."""

    def pack(self, account: str) -> PaymentSucceeded:
        session = f"cs_{secrets.token_hex(6)}"
        return PaymentSucceeded(
            account_id=account,
            customer_email="a@example.com",
            plan="starter",
            product_name="Starter",
            credits=1_000,
            amount=Money(amount_minor=999, currency="usd"),
            checkout_session_id=session,
            payment_intent_id=f"pi_{session}",
        )

    def refund(self, pack: PaymentSucceeded, amount: int) -> PaymentRefunded:
        assert pack.payment_intent_id
        return PaymentRefunded(
            account_id=pack.account_id,
            payment_intent_id=pack.payment_intent_id,
            amount_refunded=Money(amount_minor=amount, currency="usd"),
            full=amount >= pack.amount.amount_minor,
        )

    async def key(self, pool: asyncpg.Pool, account: str) -> tuple[int | None, str]:
        """(quota, what validation would say) of the account's one key."""
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT key_hash, quota_limit FROM keys WHERE account_id = $1", account)
            state = await repo.check(conn, row["key_hash"], 1)
        return row["quota_limit"], state.outcome

    async def test_refunding_one_pack_leaves_the_key_to_the_other(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        first, second = self.pack(account), self.pack(account)
        for fact in (first, second):
            await in_tx(pool, lambda c, fact=fact: issue_key(fact, c, SECRETS))  # type: ignore[misc]
        assert await in_tx(pool, lambda c: money_returned(self.refund(first, 999), c)) is True
        assert await self.key(pool, account) == (1_000, "ok")

    async def test_refunding_the_only_pack_stops_the_key_and_a_new_pack_starts_it(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        first = self.pack(account)
        await in_tx(pool, lambda c: issue_key(first, c, SECRETS))
        assert await in_tx(pool, lambda c: money_returned(self.refund(first, 300), c)) is False  # a part
        assert await self.key(pool, account) == (1_000, "ok")
        assert await in_tx(pool, lambda c: money_returned(self.refund(first, 999), c)) is True
        assert await self.key(pool, account) == (0, "suspended")
        again = self.pack(account)
        assert await in_tx(pool, lambda c: issue_key(again, c, SECRETS)) is False  # the same key, topped up
        assert await self.key(pool, account) == (1_000, "ok")

    async def test_a_lost_dispute_ends_its_pack_as_a_full_refund_would(self, pool: asyncpg.Pool) -> None:
        account = f"cus_{secrets.token_hex(4)}"
        first = self.pack(account)
        await in_tx(pool, lambda c: issue_key(first, c, SECRETS))
        assert first.payment_intent_id
        lost = DisputeClosed(
            account_id=account,
            dispute_id=f"dp_{account}",
            payment_intent_id=first.payment_intent_id,
            amount=Money(amount_minor=999, currency="usd"),
            outcome="lost",
        )
        assert await in_tx(pool, lambda c: money_returned(lost, c)) is True
        assert await in_tx(pool, lambda c: money_returned(lost, c)) is False  # delivered again: nothing more
        assert await self.key(pool, account) == (0, "suspended")

    async def test_a_paid_invoice_lifts_the_billing_hold_but_not_an_operators_suspension(
        self, pool: asyncpg.Pool
    ) -> None:
        account, subscription = f"cus_{secrets.token_hex(4)}", f"sub_{secrets.token_hex(4)}"
        started = SubscriptionStarted(
            account_id=account,
            customer_email="a@example.com",
            plan="metered",
            product_name="Metered",
            checkout_session_id=f"cs_{secrets.token_hex(6)}",
            subscription_id=subscription,
        )
        await in_tx(pool, lambda c: issue_key(started, c, SECRETS))
        invoice = {"account_id": account, "subscription_id": subscription, "invoice_id": "in_1"}
        await in_tx(pool, lambda c: payment_failed(InvoicePaymentFailed(**invoice), c, 0))
        assert (await self.key(pool, account))[1] == "suspended"
        await in_tx(pool, lambda c: invoice_paid(InvoicePaid(**invoice), c))
        assert (await self.key(pool, account))[1] == "ok"
        async with pool.acquire() as conn:
            key_id = await conn.fetchval("SELECT id FROM keys WHERE account_id = $1", account)
        await in_tx(pool, lambda c: set_key_status(key_id, "suspended", c))
        await in_tx(pool, lambda c: invoice_paid(InvoicePaid(**invoice), c))
        assert (await self.key(pool, account))[1] == "suspended"


class TestValidate:
    async def test_consuming_counts_units_and_records_usage(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool)
        verdict = await validate(Validate(key, 3, consume=True))
        assert verdict.valid
        assert verdict.consumed == 3
        assert verdict.state
        assert verdict.state.quota_used == 3
        async with pool.acquire() as conn:
            usage = await conn.fetch("SELECT payload FROM outbox WHERE topic = 'usage.recorded'")
        assert [u["payload"]["units"] for u in usage] == [3]

    async def test_the_usage_event_is_the_contract_and_in_watermark_order(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        # The outbox payload is built in SQL (consume_and_record); it must stay UsageRecorded.
        key = await a_key(pool, quota=None)
        verdicts = await asyncio.gather(
            *(validate(Validate(key, n, True, route="/v1/search", method="GET", status=200)) for n in (1, 2, 3, 4))
        )
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key, event_id, payload FROM outbox WHERE topic = 'usage.recorded' ORDER BY id"
            )
        assert len(rows) == 4
        assert set(rows[0]["payload"]) == set(UsageRecorded.model_fields)
        events = [UsageRecorded.model_validate(r["payload"]) for r in rows]
        state = verdicts[0].state
        assert state is not None
        for row, event in zip(rows, events, strict=True):
            assert (row["key"], row["event_id"]) == (state.account_id, event.event_id)
            assert (event.key_id, event.account_id, event.billing) == (state.key_id, state.account_id, "metered")
            assert (event.route, event.method, event.status) == ("/v1/search", "GET", 200)
            assert event.occurred_at.tzinfo is not None
            assert abs((datetime.now(UTC) - event.occurred_at).total_seconds()) < 60
        # Published in id order, each record's running total rises by its own units.
        assert [e.key_units_total for e in events] == list(itertools.accumulate(e.units for e in events))
        # The high-rate consumers' decoder reads exactly what the relay publishes.
        async with pool.acquire() as conn:
            published = await conn.fetch("SELECT payload::text FROM outbox WHERE topic = 'usage.recorded' ORDER BY id")
        for row, event in zip(published, events, strict=True):
            intake = parse_usage(row["payload"])
            assert (intake.event_id, intake.key_id, intake.occurred_at) == (
                str(event.event_id),
                str(event.key_id),
                event.occurred_at,
            )
            assert (intake.units, intake.key_units_total) == (event.units, event.key_units_total)

    async def test_checking_without_consuming_changes_nothing(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool)
        verdict = await validate(Validate(key, 5, consume=False))
        assert verdict.valid
        assert verdict.consumed == 0
        assert verdict.state
        assert verdict.state.quota_used == 0

    async def test_a_request_that_does_not_fit_takes_nothing(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool, quota=10)
        await validate(Validate(key, 8, consume=True))
        verdict = await validate(Validate(key, 3, consume=True))
        assert verdict.reason == "quota_exceeded"
        assert verdict.state
        assert verdict.state.quota_used == 8

    async def test_unknown_and_malformed_keys_are_not_valid(self, pool: asyncpg.Pool, validate: Check) -> None:
        unknown = keyformat.generate("test")
        assert (await validate(Validate(unknown, 1, True))).reason == "not_found"
        assert (await validate(Validate("tg_test_nope", 1, True))).reason == "malformed"

    async def test_a_revoked_key_is_refused(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool)
        first = await validate(Validate(key, 1, True))
        assert first.state is not None
        await in_tx(pool, lambda c: revoke_key(first.state.key_id, "test", c))
        assert (await validate(Validate(key, 1, True))).reason == "revoked"

    async def test_concurrent_callers_never_get_more_than_the_quota(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool, quota=40)
        verdicts = await asyncio.gather(*(validate(Validate(key, 1, True)) for _ in range(64)))
        assert sum(v.valid for v in verdicts) == 40
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT quota_used FROM keys") == 40
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'usage.recorded'") == 40


async def a_fresh_minute() -> None:
    """Fixed windows: keep a test's calls inside one clock minute."""
    if datetime.now(UTC).second >= 50:
        await asyncio.sleep(61 - datetime.now(UTC).second)


async def quota_used(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT sum(quota_used) FROM keys"))


async def key_id_of(pool: asyncpg.Pool, plaintext: str) -> UUID:
    async with pool.acquire() as conn:
        found: UUID = await conn.fetchval(
            "SELECT id FROM keys WHERE key_hash = $1", keyformat.hash_key(SECRETS.hash_secret, plaintext)
        )
    return found


async def delivered_key(pool: asyncpg.Pool, key_id: UUID) -> str:
    """The plaintext of a key as the notifier would receive it."""
    async with pool.acquire() as conn:
        sealed = await conn.fetchval("SELECT sealed FROM key_deliveries WHERE key_id = $1", key_id)
    return SECRETS.delivery.decrypt(sealed.encode()).decode()


def a_call(plaintext: str) -> Request:
    return Request(keyformat.hash_key(SECRETS.hash_secret, plaintext), 1, None, None, None)


async def waiting_for(pool: asyncpg.Pool, holder: int) -> int:
    """The backend that waits for a lock `holder` (a backend pid) holds, once one does."""
    async with pool.acquire() as conn:
        for _ in range(500):
            waiter = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder
            )
            if waiter is not None:
                return int(waiter)
            await asyncio.sleep(0.01)
        rows = await conn.fetch(
            "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid) AS b, left(query, 80) AS q "
            "FROM pg_stat_activity WHERE datname = current_database()"
        )
    raise AssertionError(f"nothing waited for backend {holder}: " + "\n".join(map(str, rows)))


class TestRateLimits:
    async def test_concurrent_callers_get_exactly_the_per_minute_limit(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key = await a_key(pool, quota=None, limits=Limits(requests_per_minute=25))
        await a_fresh_minute()
        verdicts = await asyncio.gather(*(validate(Validate(key, 1, True)) for _ in range(64)))
        assert sum(v.valid for v in verdicts) == 25
        assert {v.reason for v in verdicts if not v.valid} == {"rate_limited"}
        assert await quota_used(pool) == 25  # a refused call consumed nothing

    async def test_units_per_minute_counts_units_not_calls(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool, quota=None, limits=Limits(units_per_minute=10))
        await a_fresh_minute()
        answers = [await validate(Validate(key, 3, True)) for _ in range(4)]
        assert [v.valid for v in answers] == [True, True, True, False]
        assert answers[-1].reason == "rate_limited"

    async def test_the_answer_says_how_many_calls_are_left_and_when_the_window_resets(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key = await a_key(pool, limits=Limits(requests_per_minute=5, requests_per_hour=100))
        await a_fresh_minute()
        verdict = await validate(Validate(key, 1, True))
        assert verdict.state is not None
        assert (verdict.state.rate_limit, verdict.state.rate_remaining) == (5, 4)
        assert verdict.state.rate_reset is not None and verdict.state.rate_reset.second == 0

    async def test_checking_without_consuming_does_not_count(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool, limits=Limits(requests_per_minute=1))
        await a_fresh_minute()
        for _ in range(3):
            assert (await validate(Validate(key, 1, False))).valid
        assert (await validate(Validate(key, 1, True))).valid

    async def test_a_quota_refusal_takes_precedence_and_changes_nothing(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key = await a_key(pool, quota=2, limits=Limits(requests_per_minute=100))
        await validate(Validate(key, 2, True))
        refused = await validate(Validate(key, 1, True))
        assert refused.reason == "quota_exceeded"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT minute_requests FROM keys WHERE quota_limit = 2") == 1


class TestStatus:
    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ("status = 'suspended'", "suspended"),
            ("expires_at = now() - interval '1 second'", "expired"),
        ],
    )
    async def test_a_suspended_or_expired_key_is_refused(
        self, pool: asyncpg.Pool, validate: Check, change: str, reason: str
    ) -> None:
        key = await a_key(pool)
        async with pool.acquire() as conn:
            await conn.execute(f"UPDATE keys SET {change}")
        assert (await validate(Validate(key, 1, True))).reason == reason
        assert await quota_used(pool) == 0


class TestPrepaidCredits:
    """The ledger's balance gates prepaid keys, less what keys consumed since."""

    async def balance(self, pool: asyncpg.Pool, key: str, available: int, usage_total: int, version: int) -> bool:
        async with pool.acquire() as conn:
            account = await conn.fetchval(
                "SELECT account_id FROM keys WHERE key_hash = $1", keyformat.hash_key(SECRETS.hash_secret, key)
            )
            return await repo.learn_balance(conn, account, available, usage_total, version)

    async def test_refused_the_moment_the_balance_cannot_cover_the_call(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key = await a_key(pool, quota=1_000)
        assert (await validate(Validate(key, 5, True))).valid  # before the ledger speaks: the quota holds
        assert await self.balance(pool, key, available=10, usage_total=5, version=3)
        assert (await validate(Validate(key, 6, True))).valid
        verdict = await validate(Validate(key, 5, True))
        assert (verdict.valid, verdict.reason) == (False, "insufficient_balance")
        assert (await validate(Validate(key, 4, True))).valid  # exactly what is left
        assert (await validate(Validate(key, 1, True))).reason == "insufficient_balance"

    async def test_an_older_balance_never_replaces_a_newer_one(self, pool: asyncpg.Pool, validate: Check) -> None:
        key = await a_key(pool, quota=1_000)
        assert await self.balance(pool, key, available=3, usage_total=0, version=9)
        assert not await self.balance(pool, key, available=500, usage_total=0, version=8)  # a replayed message
        assert (await validate(Validate(key, 4, True))).reason == "insufficient_balance"

    async def test_concurrent_consumers_never_take_the_balance_below_zero(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key = await a_key(pool, quota=1_000)
        assert await self.balance(pool, key, available=37, usage_total=0, version=1)
        verdicts = await asyncio.gather(*(validate(Validate(key, 1, True)) for _ in range(200)))
        assert sum(v.valid for v in verdicts) == 37

    async def test_balances_arriving_in_any_order_never_deadlock_with_validations(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        """Validation batches lock accounts in account order; a consumer's batch of
        balances, in whatever order the topic had them, must not lock against it."""
        keys = [await a_key(pool, quota=10_000) for _ in range(8)]
        async with pool.acquire() as conn:
            accounts = [r["account_id"] for r in await conn.fetch("SELECT account_id FROM keys ORDER BY account_id")]

        def balance(account: str, version: int) -> BalanceUpdated:
            return BalanceUpdated(
                ledger_account=credits_account(account), account_id=account, asset="CALLS",
                debits_posted=0, credits_posted=10_000, debits_pending=0, credits_pending=0, current=10_000,
                pending=0, available=10_000, available_conservative=10_000, available_optimistic=10_000,
                spend_rule="conservative", usage_total=0, version=version,
            )  # fmt: skip

        async def balances() -> None:
            for version in range(1, 41):
                batch = [balance(a, version) for a in reversed(accounts)] + [balance(accounts[0], version)]
                await in_tx(pool, lambda c, b=batch: learn_balances(b, c))  # type: ignore[misc]

        async def calls() -> list[Verdict]:
            return await asyncio.gather(*(validate(Validate(keys[i % 8], 1, True)) for i in range(800)))

        _, verdicts = await asyncio.gather(balances(), calls())
        assert all(v.valid for v in verdicts)


class TestRotationAndExpiry:
    async def issued(self, pool: asyncpg.Pool) -> tuple[str, str]:
        fact = PaymentSucceeded(
            account_id=f"cus_{secrets.token_hex(4)}",
            customer_email="rotate@example.com",
            plan="professional",
            product_name="Pro",
            credits=100,
            amount=Money(amount_minor=2500, currency="usd"),
            checkout_session_id=f"cs_{secrets.token_hex(6)}",
        )
        assert await in_tx(pool, lambda c: issue_key(fact, c, SECRETS))
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT k.id, d.sealed FROM keys k JOIN key_deliveries d ON d.key_id = k.id")
        return str(row["id"]), SECRETS.delivery.decrypt(row["sealed"].encode()).decode()

    async def test_the_old_key_is_an_alias_of_its_successor_for_the_grace_then_expires(
        self, pool: asyncpg.Pool, validate: Check
    ) -> None:
        key_id, old = await self.issued(pool)
        assert (await validate(Validate(old, 10, True))).valid
        successor, _ = await in_tx(pool, lambda c: rotate_key(UUID(key_id), 0.5, c, SECRETS))
        assert successor.quota_used == 10  # the quota carries over, it does not double
        new = await delivered_key(pool, successor.id)
        assert new != old and keyformat.display(new) == successor.key_display
        assert (await validate(Validate(old, 30, True))).valid  # the grace: old still works…
        assert (await validate(Validate(new, 60, True))).valid  # …against the one shared quota
        assert (await validate(Validate(old, 1, True))).reason == "quota_exceeded"
        await asyncio.sleep(0.6)
        assert (await validate(Validate(old, 0, False))).reason == "expired"
        with pytest.raises(RotationRefused):
            await in_tx(pool, lambda c: rotate_key(UUID(key_id), 0, c, SECRETS))

    async def test_the_successor_inherits_the_current_rate_windows(self, pool: asyncpg.Pool, validate: Check) -> None:
        old = await a_key(pool, quota=None, limits=Limits(requests_per_minute=3, requests_per_hour=100))
        async with pool.acquire() as conn:
            key_id = await conn.fetchval(
                "UPDATE keys SET customer_email = 'rotate@example.com' WHERE key_hash = $1 RETURNING id",
                keyformat.hash_key(SECRETS.hash_secret, old),
            )
        await a_fresh_minute()
        assert all([(await validate(Validate(old, 1, True))).valid for _ in range(2)])
        successor, _ = await in_tx(pool, lambda c: rotate_key(key_id, 60, c, SECRETS))
        new = await delivered_key(pool, successor.id)
        answer = await validate(Validate(new, 1, True))  # the third call of the minute, not the first
        assert answer.valid and answer.state is not None and answer.state.rate_remaining == 0
        assert (await validate(Validate(new, 1, True))).reason == "rate_limited"
        assert (await validate(Validate(old, 1, True))).reason == "rate_limited"

    async def test_a_batch_that_waited_out_a_rotation_consumes_under_the_successors_lock(
        self, pool: asyncpg.Pool
    ) -> None:
        """The instant of a rotation, forced step by step with held locks.

        A batch takes its key locks, then reads the keys in a new statement. If a rotation
        commits while the batch waits for the old key's lock, that read resolves the old
        key to its successor, which the batch did not lock. A caller consuming through the
        successor meanwhile must not lose its count to the batch's: the minute allows two
        calls, so after these two a third is refused."""
        await a_fresh_minute()
        keys = {}
        for _ in range(2):
            plaintext = await a_key(pool, quota=None, limits=Limits(requests_per_minute=2))
            keys[await key_id_of(pool, plaintext)] = plaintext
        old_id, other_id = sorted(keys)  # a batch locks in id order: the old key, then the other
        async with pool.acquire() as conn:
            await conn.execute("UPDATE keys SET customer_email = 'rotate@example.com' WHERE id = $1", old_id)
        batcher = Batcher(lambda: pool, workers=1)
        batcher.start()
        async with (
            asyncio.timeout(30),
            pool.acquire() as successor_holder,
            pool.acquire() as other_holder,
            pool.acquire() as caller,
        ):
            # The rotation locks the old key, then waits to write its successor: an
            # uncommitted row holds the successor's source_ref.
            holding_successor = successor_holder.transaction()
            await holding_successor.start()
            await repo.insert_key(
                successor_holder,
                key_id=uuid4(),
                account_id="cus_holder",
                key_hash=secrets.token_bytes(32),
                hash_secret_id=SECRETS.hash_secret_id,
                key_display="held",
                plan="p",
                billing="metered",
                quota_limit=None,
                features=[],
                source_ref=f"rotate:{old_id}",
            )
            rotation = asyncio.create_task(in_tx(pool, lambda c: rotate_key(old_id, 60, c, SECRETS)))
            rotator = await waiting_for(pool, successor_holder.get_server_pid())
            # A batch of the old key and the other key waits for the old key's lock.
            holding_other = other_holder.transaction()
            await holding_other.start()
            await other_holder.execute("SELECT 1 FROM keys WHERE id = $1 FOR UPDATE", other_id)
            batch = asyncio.gather(*(batcher.consume(a_call(keys[k])) for k in (old_id, other_id)))
            await waiting_for(pool, rotator)
            # The rotation commits. The batch locks the old key and waits for the other.
            await holding_successor.rollback()
            successor, _ = await rotation
            await waiting_for(pool, other_holder.get_server_pid())
            # A caller consumes through the successor and holds its lock; then the batch reads.
            new = await delivered_key(pool, successor.id)
            async with caller.transaction():
                decided = await caller.fetchval(
                    "SELECT outcome FROM consume_and_record(ARRAY[$1::bytea], ARRAY[1::bigint], "
                    "  ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::int])",
                    keyformat.hash_key(SECRETS.hash_secret, new),
                )
                assert decided == "ok"
                await holding_other.commit()
                await waiting_for(pool, caller.get_server_pid())
            assert [c.outcome for c in await batch] == ["ok", "ok"]
        try:
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT minute_requests FROM keys WHERE id = $1", successor.id) == 2
            assert (await batcher.consume(a_call(new))).outcome == "rate_limited"
        finally:
            await batcher.stop()

    async def test_an_expiry_set_by_the_admin_applies_at_once(self, pool: asyncpg.Pool, validate: Check) -> None:
        key_id, key = await self.issued(pool)
        async with pool.acquire() as conn:
            assert await repo.set_expiry(conn, UUID(key_id), datetime.now(UTC)) is not None
        assert (await validate(Validate(key, 1, True))).reason == "expired"


# Rotating the hash secret in place: a key stored under the previous secret keeps working,
# is moved to the current one the first time it is used, and then needs the previous
# secret no more.
OLD = replace(SECRETS, hash_secret=b"the-hash-secret-before-rotation")
ROTATING = replace(OLD, hash_secret=b"the-hash-secret-after-rotation", previous_hash_secrets=(OLD.hash_secret,))
ROTATED = replace(ROTATING, previous_hash_secrets=())  # the previous secret dropped


@pytest.fixture
async def batcher(pool: asyncpg.Pool) -> AsyncIterator[Batcher]:
    b = Batcher(lambda: pool)
    b.start()
    yield b
    await b.stop()


async def stored(pool: asyncpg.Pool) -> list[tuple[bytes, str]]:
    async with pool.acquire() as conn:
        return [tuple(r.values()) for r in await conn.fetch("SELECT key_hash, hash_secret_id FROM keys ORDER BY id")]  # type: ignore[misc]


async def validated(pool: asyncpg.Pool, batcher: Batcher, under: KeySecrets, key: str, consume: bool = True) -> Verdict:
    return await validate_key(Validate(key, 1, consume), pool, under, batcher)


class TestHashSecretRotation:
    async def test_a_key_under_the_previous_secret_works_and_moves_to_the_current_one(
        self, pool: asyncpg.Pool, batcher: Batcher
    ) -> None:
        key = await a_key(pool, quota=None, under=OLD)
        assert (await validated(pool, batcher, ROTATING, key)).valid
        assert await stored(pool) == [(ROTATING.hashed(key), ROTATING.hash_secret_id)]
        # Moved: the previous secret is needed no more, and the quota counted the call once.
        verdict = await validated(pool, batcher, ROTATED, key)
        assert verdict.valid and verdict.state is not None and verdict.state.quota_used == 2

    async def test_a_check_and_a_lookup_move_the_key_too(self, pool: asyncpg.Pool, batcher: Batcher) -> None:
        checked, looked_up = await a_key(pool, quota=None, under=OLD), await a_key(pool, quota=None, under=OLD)
        assert (await validated(pool, batcher, ROTATING, checked, consume=False)).valid
        async with pool.acquire() as conn:
            found = await find_live_key(conn, ROTATING, looked_up)
        assert found is not None
        for key in (checked, looked_up):
            assert (await validated(pool, batcher, ROTATED, key)).valid

    async def test_a_key_not_moved_before_the_previous_secret_is_dropped_is_unknown(
        self, pool: asyncpg.Pool, batcher: Batcher
    ) -> None:
        key = await a_key(pool, quota=None, under=OLD)
        assert (await validated(pool, batcher, ROTATED, key)).reason == "not_found"
        assert await stored(pool) == [(OLD.hashed(key), OLD.hash_secret_id)]

    async def test_an_unknown_key_moves_nothing(self, pool: asyncpg.Pool, batcher: Batcher) -> None:
        key = await a_key(pool, quota=None, under=OLD)
        assert (await validated(pool, batcher, ROTATING, keyformat.generate("test"))).reason == "not_found"
        assert await stored(pool) == [(OLD.hashed(key), OLD.hash_secret_id)]

    async def test_the_live_keys_under_each_secret_are_counted(self, pool: asyncpg.Pool, batcher: Batcher) -> None:
        used, unused = await a_key(pool, quota=None, under=OLD), await a_key(pool, quota=None, under=OLD)
        await validated(pool, batcher, ROTATING, used)
        async with pool.acquire() as conn:
            counts = await repo.live_keys_by_secret(conn)
        assert counts == {ROTATING.hash_secret_id: 1, OLD.hash_secret_id: 1}
        assert unused  # still under the previous secret: not yet time to drop it
