"""SMTP out, and whether a refusal is for now or for good."""

from email.message import EmailMessage

import aiosmtplib

from tollgate_shared.errors import Transient

from .templates import Email, html_of


class Mailer:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._starttls = username, password, starttls

    async def send(self, to: str, email: Email, message_id: str) -> None:
        """Hand the message to the mail server. A server that is away, or answers 4xx
        (try later), raises Transient; a 5xx refusal is permanent and raised as it is."""
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = email.subject
        # A stable Message-ID: if a crash makes us send twice, the copies are recognisably one.
        msg["Message-ID"] = message_id
        msg.set_content(email.body)
        msg.add_alternative(html_of(email), subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                timeout=10,
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise Transient(f"mail server deferred the message ({exc.code})") from exc
            raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(400 <= r.code < 500 for r in exc.recipients):
                raise Transient("mail server deferred every recipient") from exc
            raise
