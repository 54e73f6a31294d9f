"""SMTP out."""

from email.message import EmailMessage

import aiosmtplib

from .templates import Email


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
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = email.subject
        # A stable Message-ID: if a crash makes us send twice, the copies are recognisably one.
        msg["Message-ID"] = message_id
        msg.set_content(email.body)
        await aiosmtplib.send(
            msg,
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=10,
        )
