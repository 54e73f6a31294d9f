"""Events the portal publishes on `portal.events`."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from .envelope import Event


class SignInLinkRequested(Event):
    """A customer asked to sign in (or just signed up): the notifier emails them the link.
    The link is a one-use credential, so it travels sealed with the delivery keys, which
    only the notifier opens."""

    event_type: Literal["SignInLinkRequested"] = "SignInLinkRequested"
    account_id: str
    email: str
    name: str | None = None
    sealed_link: str = Field(description="Fernet token (the delivery keys) of the sign-in URL")
    expires_at: datetime
    first: bool = Field(default=False, description="True for the link that completes a sign-up")


PORTAL_MESSAGES = (SignInLinkRequested,)
