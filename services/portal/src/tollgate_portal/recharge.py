"""Auto-recharge: "when available falls below X, buy Y", charged off-session to the card
on file, at most once per crossing and `daily_cap` times a day.

The rule is armed while available is at or over the threshold. A balance under it, for
an armed rule, is a crossing: the rule disarms, the crossing is recorded, and the card
is charged with the crossing as the top-up's idempotency key, so a balance delivered
again charges nothing more. A decline pauses the rule (the notifier emails the customer);
saving the rule again lifts the pause.
"""

import asyncpg

from tollgate_shared.contracts import BalanceUpdated, TopUpFailed
from tollgate_shared.logging import get_logger

from . import repo
from .clients import Services

log = get_logger(__name__)


async def on_balance(conn: asyncpg.Connection, services: Services, balance: BalanceUpdated, cap: int) -> str:
    if not balance.is_credits or not await repo.newer_balance(conn, balance.account_id, balance.version):
        return "ignored"
    rule = await repo.rule(conn, balance.account_id, lock=True)
    if rule is None or not rule.enabled or rule.paused:
        return "no rule"
    if balance.available >= rule.threshold:
        if not rule.armed:
            await repo.set_armed(conn, rule.account_id, True)
        return "armed"
    if not rule.armed:
        return "fired for this crossing"
    await repo.set_armed(conn, rule.account_id, False, crossed=True)
    if await repo.fired_today(conn, rule.account_id) >= min(rule.daily_cap, cap):
        log.info("auto-recharge at its daily cap", account_id=rule.account_id)
        return "daily cap"
    crossing = f"auto:{rule.account_id}:{rule.crossings + 1}"
    if not await repo.record_recharge(conn, crossing, rule.account_id):
        return "fired for this crossing"
    made = await services.top_up(rule.account_id, rule.amount_minor, "auto_recharge", crossing)
    await repo.recharge_outcome(conn, crossing, made["id"], made["state"])
    if made["state"] == "failed":
        await repo.pause(conn, rule.account_id, made.get("failure") or "declined")
    log.info("auto-recharge fired", account_id=rule.account_id, state=made["state"])
    return str(made["state"])


async def on_top_up_failed(conn: asyncpg.Connection, fact: TopUpFailed) -> bool:
    """A recharge the webhook failed later (Stripe did not answer at once): pause too."""
    if fact.source != "auto_recharge":
        return False
    await repo.pause(conn, fact.account_id, fact.reason)
    return True
