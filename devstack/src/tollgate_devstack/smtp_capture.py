"""A real SMTP server that keeps what it receives, with a JSON API to read it back.

aiosmtpd speaks SMTP; each message is kept in memory and written as an .eml file,
and GET /api/messages?to=<address> lists them for tests and the demo.
"""

import asyncio
import email
import email.policy
import os
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Mailbox:
    def __init__(self, directory: Path | None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.directory = directory

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "id": len(self.messages) + 1,
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "subject": str(msg["Subject"] or ""),
            "message_id": str(msg["Message-ID"] or ""),
            "body": body.get_content() if body is not None else "",
            "html": html.get_content() if html is not None else None,
            "received_at": time.time(),
        }
        self.messages.append(record)
        if self.directory:
            (self.directory / f"{record['id']:06d}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"


def http_app(box: Mailbox) -> Starlette:
    async def list_messages(request: Request) -> JSONResponse:
        to = request.query_params.get("to")
        found = [m for m in box.messages if to is None or to in m["rcpt_to"]]
        return JSONResponse({"messages": found})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "messages": len(box.messages)})

    return Starlette(routes=[Route("/api/messages", list_messages), Route("/healthz", health)])


async def serve(smtp_port: int, http_port: int, directory: Path | None) -> None:
    import uvicorn

    if directory:
        directory.mkdir(parents=True, exist_ok=True)
    box = Mailbox(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box, hostname="tollgate-smtp-capture"), "127.0.0.1", smtp_port)
    config = uvicorn.Config(http_app(box), host="127.0.0.1", port=http_port, log_level="warning")
    async with server:
        await uvicorn.Server(config).serve()


def main() -> None:
    directory = os.environ.get("SMTP_CAPTURE_DIR")
    asyncio.run(
        serve(
            int(os.environ.get("SMTP_CAPTURE_SMTP_PORT", "2525")),
            int(os.environ.get("SMTP_CAPTURE_HTTP_PORT", "8025")),
            Path(directory) if directory else None,
        )
    )


if __name__ == "__main__":
    main()
