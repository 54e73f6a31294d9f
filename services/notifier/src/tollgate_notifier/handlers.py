"""The notifier's use cases: deliver a new key by email, exactly once as far as SMTP allows."""

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import asyncpg
from cryptography.fernet import Fernet

from tollgate_shared.contracts import BalanceAlert, InvoicePaymentFailed, KeyIssued, KeyToppedUp
from tollgate_shared.logging import get_logger

from . import metrics
from .mailer import Mailer
from .templates import Email, load, render

log = get_logger(__name__)


@dataclass(frozen=True)
class NotifierDeps:
    pool: asyncpg.Pool
    mailer: Mailer
    delivery: Fernet
    templates_dir: Path
    customer_portal_url: str


async def email_new_key(event: KeyIssued, deps: NotifierDeps) -> bool:
    plaintext = deps.delivery.decrypt(event.key_ciphertext.encode()).decode()
    email = render(
        load("key_issued", deps.templates_dir),
        {
            "ApiKey": plaintext,
            "ApiQuota": "unlimited (metered)" if event.quota is None else f"{event.quota:,}",
            "ProductName": event.product_name,
            "CustomerEmail": event.customer_email,
            "PaymentProcessorCustomerName": event.customer_name or event.customer_email,
            "CustomerPortalUrl": deps.customer_portal_url,
        },
    )
    return await send_once(deps, event.event_id, "key_issued", event.customer_email, email)


async def email_top_up(event: KeyToppedUp, deps: NotifierDeps) -> bool:
    email = render(
        load("key_topped_up", deps.templates_dir),
        {
            "ProductName": event.product_name,
            "AddedQuota": f"{event.added:,}",
            "ApiQuota": f"{event.quota:,}",
            "KeyDisplay": event.key_display,
            "CustomerEmail": event.customer_email,
            "PaymentProcessorCustomerName": event.customer_name or event.customer_email,
            "CustomerPortalUrl": deps.customer_portal_url,
        },
    )
    return await send_once(deps, event.event_id, "key_topped_up", event.customer_email, email)


async def remember_contact(event: KeyIssued | KeyToppedUp, deps: NotifierDeps) -> None:
    """The address a customer paid with is where their account's notices go."""
    async with deps.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO contacts (account_id, email, name) VALUES ($1, $2, $3) ON CONFLICT (account_id) "
            "DO UPDATE SET email = EXCLUDED.email, name = coalesce(EXCLUDED.name, contacts.name), updated_at = now()",
            event.account_id,
            event.customer_email,
            event.customer_name,
        )


async def email_balance_alert(alert: BalanceAlert, deps: NotifierDeps) -> bool:
    """Low and exhausted credits are worth an email; replenished credits are not."""
    template = {"low_balance": "low_balance", "exhausted": "credits_exhausted"}.get(alert.alert)
    if template is None:
        return False
    values = {"Available": f"{alert.available:,}", "Threshold": f"{alert.threshold:,}"}
    return await notify_account(deps, alert.event_id, template, alert.account_id, values)


async def email_payment_failed(fact: InvoicePaymentFailed, deps: NotifierDeps) -> bool:
    values = {"InvoiceId": fact.invoice_id, "AttemptCount": str(fact.attempt_count)}
    return await notify_account(deps, fact.event_id, "payment_failed", fact.account_id, values)


async def notify_account(
    deps: NotifierDeps, event_id: UUID, template: str, account_id: str, values: dict[str, str]
) -> bool:
    """A notice about an account, to the address its customer paid with (from the key events)."""
    async with deps.pool.acquire() as conn:
        contact = await conn.fetchrow("SELECT email, name FROM contacts WHERE account_id = $1", account_id)
    if contact is None:
        log.warning("no address for a notice", template=template, account_id=account_id)
        return False
    to = contact["email"]
    values = values | {
        "CustomerName": contact["name"] or to,
        "CustomerEmail": to,
        "CustomerPortalUrl": deps.customer_portal_url,
    }
    return await send_once(deps, event_id, template, to, render(load(template, deps.templates_dir), values))


async def send_once(deps: NotifierDeps, event_id: UUID, template: str, to: str, email: Email) -> bool:
    """Send unless this event's email was already sent.

    The 'sending' row commits before SMTP and 'sent' after. A crash between the two
    resends on redelivery with the same Message-ID: SMTP has no transactions, so this
    is the narrowest window there is, and the duplicate is identifiable.
    """
    message_id = f"<{event_id}@tollgate>"
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            status = await conn.fetchval("SELECT status FROM emails WHERE event_id = $1 FOR UPDATE", event_id)
            if status == "sent":
                log.info("email already sent", template=template)
                metrics.EMAILS.labels(template, "already_sent").inc()
                return False
            if status is None:
                await conn.execute(
                    "INSERT INTO emails (event_id, template, recipient, message_id, status) "
                    "VALUES ($1, $2, $3, $4, 'sending')",
                    event_id,
                    template,
                    to,
                    message_id,
                )
        await deps.mailer.send(to, email, message_id)
        await conn.execute("UPDATE emails SET status = 'sent', sent_at = now() WHERE event_id = $1", event_id)
    log.info("email sent", template=template)
    metrics.EMAILS.labels(template, "sent").inc()
    return True
