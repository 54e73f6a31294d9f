"""Sign-in links: made here, emailed by the notifier. The link is a credential, so it
travels sealed (the delivery keys, which only the notifier opens) in a portal.events
message written to the outbox in the same transaction as the link's hash."""

import asyncpg

from tollgate_shared import outbox
from tollgate_shared.contracts import SignInLinkRequested
from tollgate_shared.contracts.topics import PORTAL_EVENTS
from tollgate_shared.settings import multi_fernet

from . import auth
from .config import Settings


async def send_sign_in_link(
    conn: asyncpg.Connection, s: Settings, account_id: str, email: str, name: str, *, first: bool = False
) -> None:
    token, expires = await auth.new_link(conn, account_id, s.sign_in_link_minutes)
    url = f"{s.public_url.rstrip('/')}/sign-in/{token}"
    sealed = multi_fernet(s.delivery_keys).encrypt(url.encode()).decode()
    event = SignInLinkRequested(
        account_id=account_id, email=email, name=name, sealed_link=sealed, expires_at=expires, first=first
    )
    await outbox.add(conn, PORTAL_EVENTS, account_id, event)
