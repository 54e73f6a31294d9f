"""The whole local system: infrastructure, emulators and the five services."""

import asyncio
import json
import secrets
import sys
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from tollgate_shared.bus import ensure_topics

from . import infra
from .config import SERVICES, StackConfig
from .processes import Processes, port_open, wait_until

STRIPE_API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcTollgate"


class Stack:
    def __init__(self, cfg: StackConfig | None = None, service_env: dict[str, str] | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.procs = Processes(self.cfg.state_dir)
        self.service_env = service_env or {}

    # --- secrets: generated once per stack directory, never committed ----------------
    @property
    def secrets(self) -> dict[str, str]:
        path = self.cfg.state_dir / "secrets.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    {
                        "webhook_secret": "whsec_" + secrets.token_hex(24),
                        "hash_secret": secrets.token_urlsafe(32),
                        "delivery_key": Fernet.generate_key().decode(),
                        "admin_token": secrets.token_urlsafe(24),
                    }
                )
            )
            path.chmod(0o600)
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def endpoints(self) -> dict[str, str]:
        c = self.cfg
        return {
            "database_url": c.database_url,
            "kafka": c.kafka_bootstrap,
            "stripe": c.url("stripe"),
            "stripe_mock": c.url("stripe_mock"),
            "smtp_http": c.url("smtp_http"),
            **{name: c.url(name) for name in SERVICES},
            "admin_token": self.secrets["admin_token"],
            "webhook_secret": self.secrets["webhook_secret"],
        }

    # --- up / down -----------------------------------------------------------------------
    def up_infra(self, database_url: str | None = None, kafka: str | None = None) -> None:
        """Start PostgreSQL and Kafka unless given, then stripe-mock, the emulator, SMTP capture."""
        if database_url is None:
            infra.start_postgres(self.cfg, self.procs)
        if kafka is None:
            infra.start_kafka(self.cfg, self.procs)
        asyncio.run(ensure_topics(kafka or self.cfg.kafka_bootstrap, replicas=1))
        infra.start_stripe_mock(self.cfg, self.procs)
        self._start_python(
            "stripe-emulator",
            "tollgate_devstack.stripe_emulator",
            {
                "STRIPE_EMULATOR_PORT": str(self.cfg.ports["stripe"]),
                "STRIPE_EMULATOR_STRIPE_MOCK_URL": self.cfg.url("stripe_mock"),
                "STRIPE_EMULATOR_PUBLIC_URL": self.cfg.url("stripe"),
                "STRIPE_EMULATOR_WEBHOOK_URL": f"{self.cfg.url('checkout')}/stripe/webhook",
                "STRIPE_EMULATOR_WEBHOOK_SECRET": self.secrets["webhook_secret"],
            },
            port=self.cfg.ports["stripe"],
        )
        self._start_python(
            "smtp-capture",
            "tollgate_devstack.smtp_capture",
            {
                "SMTP_CAPTURE_SMTP_PORT": str(self.cfg.ports["smtp"]),
                "SMTP_CAPTURE_HTTP_PORT": str(self.cfg.ports["smtp_http"]),
                "SMTP_CAPTURE_DIR": str(self.cfg.state_dir / "mail"),
            },
            port=self.cfg.ports["smtp_http"],
        )

    def up_services(self, database_url: str | None = None, kafka: str | None = None) -> None:
        for name in SERVICES:
            self.start_service(name, database_url, kafka)
        for name in SERVICES:
            self.wait_ready(name)

    def start_service(self, name: str, database_url: str | None = None, kafka: str | None = None) -> None:
        env = self.env_for(name, database_url or self.cfg.database_url, kafka or self.cfg.kafka_bootstrap)
        self.procs.start(name, [sys.executable, "-m", f"tollgate_{name}"], env, port=self.cfg.ports[name])

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        url = f"{self.cfg.url(name)}/readyz"

        def ready() -> bool:
            if self.procs.pid(name) is None:
                raise SystemExit(f"{name} exited during start-up:\n{self.procs.log_tail(name)}")
            return httpx.get(url, timeout=2).status_code == 200

        wait_until(name, ready, timeout, lambda: self.procs.log_tail(name))

    def env_for(self, name: str, database_url: str, kafka: str) -> dict[str, str]:
        prefix = name.upper() + "_"
        s = self.secrets
        env = {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "KAFKA_TOPIC_REPLICAS": "1",  # one broker
            "HTTP_PORT": str(self.cfg.ports[name]),
        }
        env |= {
            "checkout": {
                "STRIPE_API_KEY": STRIPE_API_KEY,
                "STRIPE_API_BASE": self.cfg.url("stripe"),
                "STRIPE_WEBHOOK_SECRET": s["webhook_secret"],
            },
            "ledger": {
                "ADMIN_TOKEN": s["admin_token"],
                # For the finance CLI's reconcile, run with this environment.
                "STRIPE_API_KEY": STRIPE_API_KEY,
                "STRIPE_API_BASE": self.cfg.url("stripe"),
            },
            "keys": {
                "HASH_SECRET": s["hash_secret"],
                "DELIVERY_KEY": s["delivery_key"],
                "ADMIN_TOKEN": s["admin_token"],
            },
            "notifier": {
                "SMTP_PORT": str(self.cfg.ports["smtp"]),
                "DELIVERY_KEY": s["delivery_key"],
                "CUSTOMER_PORTAL_URL": f"{self.cfg.url('checkout')}/portal",
            },
            "usage_sync": {"STRIPE_API_KEY": STRIPE_API_KEY, "STRIPE_API_BASE": self.cfg.url("stripe")},
        }[name]
        return {prefix + k: v for k, v in env.items()} | {
            k: v for k, v in self.service_env.items() if k.startswith(prefix)
        }

    def _start_python(self, name: str, module: str, env: dict[str, str], *, port: int) -> None:
        if self.procs.pid(name) and port_open(port):
            return
        self.procs.start(name, [sys.executable, "-m", module], env, port=port)
        wait_until(name, lambda: port_open(port), 30, lambda: self.procs.log_tail(name))

    def running(self) -> dict[str, bool]:
        names = ["postgres", "kafka", "stripe-mock", "stripe-emulator", "smtp-capture", *SERVICES]
        return {n: self.procs.pid(n) is not None for n in names}

    def down(self) -> None:
        # Services first, so none of them is mid-write when its database goes away.
        for name in [*SERVICES, "smtp-capture", "stripe-emulator", "stripe-mock", "kafka", "postgres"]:
            if self.procs.stop(name):
                infra.say(f"stopped {name}")

    def log_path(self, name: str) -> Path:
        return self.procs.log_dir / f"{name}.log"
