"""The notifier's use cases: deliver a new key, and notices about an account, each once.

Every handler runs inside the consumer's transaction for one event, which also stores
the event's offset: the email row and the offset commit together after SMTP accepted
the message. A crash between SMTP and that commit sends the email again on redelivery,
with the same Message-ID: SMTP has no transactions, so this is the narrowest window
there is, and the duplicate is recognisably one.

A new key's plaintext is fetched, sealed, from the keys service, and opened only here.
Once its email is committed, the keys service is told to forget it (forget_emailed_keys).
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID

import asyncpg
from cryptography.fernet import MultiFernet

from tollgate_shared.contracts import (
    BalanceAlert,
    InvoicePaymentFailed,
    KeyIssued,
    KeyToppedUp,
    SignInLinkRequested,
    TopUpFailed,
)
from tollgate_shared.logging import get_logger

from . import metrics, repo
from .mailer import Mailer
from .templates import Email, load, render

log = get_logger(__name__)


class SealedKeys(Protocol):
    """Where new keys wait, sealed, to be emailed: the keys service (keys_client.py)."""

    async def sealed_key(self, key_id: UUID) -> str | None: ...

    async def forget(self, key_id: UUID) -> None: ...


@dataclass(frozen=True)
class Deps:
    mailer: Mailer
    keys: SealedKeys
    delivery: MultiFernet  # opens what the keys service sealed, with any current delivery key
    templates_dir: Path
    customer_portal_url: str


async def email_new_key(event: KeyIssued, conn: asyncpg.Connection, deps: Deps) -> bool:
    if event.customer_email:
        await repo.remember_contact(conn, event.account_id, event.customer_email, event.customer_name)
    if not event.emailed:
        return False  # shown once to the customer who made it; there is nothing to send
    if await repo.already_sent(conn, event.event_id):
        return _already_sent("key_issued")
    sealed = await deps.keys.sealed_key(event.key_id)
    if sealed is None:
        # Emailed by an earlier life of this notifier (its rows lost), or never sealed.
        log.warning("key no longer held by the keys service; not emailed", key_id=str(event.key_id))
        metrics.EMAILS.labels("key_issued", "key_gone").inc()
        return False
    plaintext = deps.delivery.decrypt(sealed.encode()).decode()
    values = {
        "ApiKey": plaintext,
        "ApiQuota": "unlimited (metered)" if event.quota is None else f"{event.quota:,}",
        "ProductName": event.product_name,
        "CustomerEmail": event.customer_email,
        "PaymentProcessorCustomerName": event.customer_name or event.customer_email,
        "CustomerPortalUrl": deps.customer_portal_url,
    }
    email = render(load("key_issued", deps.templates_dir), values)
    await send(conn, deps, event.event_id, "key_issued", event.customer_email, email)
    await repo.forget_after_commit(conn, event.key_id)
    return True


async def email_top_up(event: KeyToppedUp, conn: asyncpg.Connection, deps: Deps) -> bool:
    await repo.remember_contact(conn, event.account_id, event.customer_email, event.customer_name)
    values = {
        "ProductName": event.product_name,
        "AddedQuota": f"{event.added:,}",
        "ApiQuota": f"{event.quota:,}",
        "KeyDisplay": event.key_display,
        "CustomerEmail": event.customer_email,
        "PaymentProcessorCustomerName": event.customer_name or event.customer_email,
        "CustomerPortalUrl": deps.customer_portal_url,
    }
    email = render(load("key_topped_up", deps.templates_dir), values)
    return await send_once(conn, deps, event.event_id, "key_topped_up", event.customer_email, email)


async def email_balance_alert(alert: BalanceAlert, conn: asyncpg.Connection, deps: Deps) -> bool:
    """Low and exhausted credits are worth an email; replenished credits are not."""
    template = {"low_balance": "low_balance", "exhausted": "credits_exhausted"}.get(alert.alert)
    if template is None:
        return False
    values = {"Available": f"{alert.available:,}", "Threshold": f"{alert.threshold:,}"}
    return await notify_account(conn, deps, alert.event_id, template, alert.account_id, values)


async def email_payment_failed(fact: InvoicePaymentFailed, conn: asyncpg.Connection, deps: Deps) -> bool:
    values = {"InvoiceId": fact.invoice_id, "AttemptCount": str(fact.attempt_count)}
    return await notify_account(conn, deps, fact.event_id, "payment_failed", fact.account_id, values)


async def email_auto_recharge_declined(fact: TopUpFailed, conn: asyncpg.Connection, deps: Deps) -> bool:
    """Only auto-recharge's declines: the customer was not there when it charged them."""
    if fact.source != "auto_recharge":
        return False
    values = {
        "Credits": f"{fact.credits:,}",
        "Amount": f"{fact.amount.amount_minor / 100:,.2f} {fact.amount.currency.upper()}",
        "Reason": fact.reason.replace("_", " "),
    }
    return await notify_account(conn, deps, fact.event_id, "auto_recharge_declined", fact.account_id, values)


async def email_sign_in_link(event: SignInLinkRequested, conn: asyncpg.Connection, deps: Deps) -> bool:
    """The portal's one-use sign-in link, opened here only, to the address it names."""
    await repo.remember_contact(conn, event.account_id, event.email, event.name)
    if await repo.already_sent(conn, event.event_id):
        return _already_sent("sign_in_link")
    link = deps.delivery.decrypt(event.sealed_link.encode()).decode()
    values = {"CustomerName": event.name or event.email, "CustomerEmail": event.email, "SignInUrl": link}
    email = render(load("sign_in_link", deps.templates_dir), values)
    await send(conn, deps, event.event_id, "sign_in_link", event.email, email)
    return True


async def notify_account(
    conn: asyncpg.Connection, deps: Deps, event_id: UUID, template: str, account_id: str, values: dict[str, str]
) -> bool:
    """A notice about an account, to the address its customer paid with (from the key events)."""
    contact = await repo.contact(conn, account_id)
    if contact is None:
        log.warning("no address for a notice", template=template, account_id=account_id)
        return False
    to = contact["email"]
    values = values | {
        "CustomerName": contact["name"] or to,
        "CustomerEmail": to,
        "CustomerPortalUrl": deps.customer_portal_url,
    }
    return await send_once(conn, deps, event_id, template, to, render(load(template, deps.templates_dir), values))


async def send_once(conn: asyncpg.Connection, deps: Deps, event_id: UUID, template: str, to: str, email: Email) -> bool:
    """Send unless this event's email was already sent; the row commits with the offset."""
    if await repo.already_sent(conn, event_id):
        return _already_sent(template)
    await send(conn, deps, event_id, template, to, email)
    return True


async def send(conn: asyncpg.Connection, deps: Deps, event_id: UUID, template: str, to: str, email: Email) -> None:
    message_id = f"<{event_id}@tollgate>"
    await deps.mailer.send(to, email, message_id)
    await repo.record_sent(conn, event_id, template, to, message_id)
    log.info("email sent", template=template)
    metrics.EMAILS.labels(template, "sent").inc()


def _already_sent(template: str) -> bool:
    log.info("email already sent", template=template)
    metrics.EMAILS.labels(template, "already_sent").inc()
    return False


async def forget_emailed_keys(pool: asyncpg.Pool, keys: SealedKeys, *, every_s: float = 2.0) -> None:
    """Tell the keys service to drop the sealed plaintext of every key already emailed.
    Runs beside the consumers; a call that fails is tried again on the next round."""
    while True:
        try:
            async with pool.acquire() as conn:
                for key_id in await repo.keys_to_forget(conn, limit=100):
                    await keys.forget(key_id)
                    await repo.forgotten(conn, key_id)
        except Exception as exc:
            log.warning("cannot have emailed keys forgotten yet", error=repr(exc))
        await asyncio.sleep(every_s)
