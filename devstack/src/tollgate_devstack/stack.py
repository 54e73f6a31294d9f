"""The whole local system: infrastructure, emulators and the five services."""

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
from cryptography.fernet import Fernet

from tollgate_shared.acls import grant
from tollgate_shared.bus import ensure_topics
from tollgate_shared.topics import all_acls

from . import infra
from .config import SERVICES, StackConfig
from .processes import Processes, port_open, wait_until
from .tls import ensure_certificates

STRIPE_API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcTollgate"


ROLES = {name: f"tollgate_{name}" for name in SERVICES}  # each service's own PostgreSQL role
KAFKA_USERS = {name: f"tollgate-{name.replace('_', '-')}" for name in SERVICES}
# Callers of other services' internal routes, each with a token of its own.
INTERNAL_CALLERS = ("checkout", "ledger", "notifier", "usage_sync", "portal")


class Stack:
    def __init__(self, cfg: StackConfig | None = None, service_env: dict[str, str] | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.procs = Processes(self.cfg.state_dir)
        self.service_env = service_env or {}
        # PostgreSQL and Kafka given from outside (containers) are plain: no TLS, no SASL.
        self.own_postgres = self.own_kafka = True

    # --- secrets: generated once per stack directory, never committed ----------------
    @property
    def secrets(self) -> dict[str, Any]:
        """Every secret of the stack, made on first use; one added to the code later is
        added to an existing file."""
        path = self.cfg.state_dir / "secrets.json"
        found = json.loads(path.read_text()) if path.exists() else {}
        wanted: dict[str, Callable[[], Any]] = {
            "webhook_secret": lambda: "whsec_" + secrets.token_hex(24),
            "hash_secret": lambda: secrets.token_urlsafe(32),
            "delivery_keys": lambda: Fernet.generate_key().decode(),
            "operator_token": lambda: secrets.token_urlsafe(32),
            "gateway_token": lambda: secrets.token_urlsafe(32),
            "internal_tokens": lambda: {name: secrets.token_urlsafe(32) for name in INTERNAL_CALLERS},
            "database_passwords": lambda: {name: secrets.token_urlsafe(24) for name in SERVICES},
            "kafka_passwords": lambda: {name: secrets.token_urlsafe(24) for name in SERVICES},
            "session_secret": lambda: secrets.token_urlsafe(32),
        }
        missing = {k: make() for k, make in wanted.items() if k not in found}
        for k, make in wanted.items():  # a service added since: its part of a per-service secret
            if isinstance(found.get(k), dict) and (more := {n: v for n, v in make().items() if n not in found[k]}):
                missing[k] = found[k] | more
        if missing:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps(found | missing, indent=2))
        return found | missing

    def endpoints(self) -> dict[str, str]:
        c, s = self.cfg, self.secrets
        return {
            "database_url": c.database_url,
            "kafka": c.kafka_bootstrap,
            "stripe": c.url("stripe"),
            "stripe_mock": c.url("stripe_mock"),
            "smtp_http": c.url("smtp_http"),
            **{name: c.url(name) for name in SERVICES},
            **{f"{name}_admin": c.url(f"{name}_admin") for name in SERVICES},
            "portal_url": f"{c.url('portal')}/portal/",
            "operator_token": s["operator_token"],
            "portal_token": s["internal_tokens"]["portal"],
            "gateway_token": s["gateway_token"],
            "webhook_secret": s["webhook_secret"],
            "tls_ca": str(c.tls_dir / "ca.crt"),
        }

    def service_database_url(self, name: str, database_url: str | None = None) -> str:
        """The URL service `name` connects with: its own role, which may only read and
        write its own schema's tables."""
        parts = urlsplit(database_url or self.cfg.database_url)
        host = parts.netloc.rpartition("@")[2]
        password = quote(self.secrets["database_passwords"][name], safe="")
        return urlunsplit(parts._replace(netloc=f"{ROLES[name]}:{password}@{host}"))

    # --- up / down -----------------------------------------------------------------------
    def up_data(self, database_url: str | None = None, kafka: str | None = None) -> None:
        """PostgreSQL and Kafka unless given, each service's role and user in them, the topics."""
        certs = ensure_certificates(self.cfg.tls_dir)
        self.own_postgres, self.own_kafka = database_url is None, kafka is None
        if database_url is None:
            infra.start_postgres(self.cfg, self.procs, certs)
        if kafka is None:
            users = {KAFKA_USERS[n]: p for n, p in self.secrets["kafka_passwords"].items()}
            infra.start_kafka(self.cfg, self.procs, certs, users)
        asyncio.run(self._service_roles(database_url or self.cfg.database_url))
        asyncio.run(ensure_topics(kafka or self.cfg.kafka_bootstrap, replicas=1))
        if self.own_kafka:  # a broker from outside has no authorizer: its services connect as anyone
            asyncio.run(grant(self.cfg.kafka_bootstrap, all_acls()))

    def up_infra(self, database_url: str | None = None, kafka: str | None = None) -> None:
        """Start PostgreSQL and Kafka unless given, then stripe-mock, the emulator, SMTP capture."""
        if risky := self.cfg.ports_in_ephemeral_range():
            infra.say(
                f"warning: {', '.join(f'{n} {p}' for n, p in risky.items())} lie in the kernel's ephemeral port "
                "range: an outgoing connection can hold one when its server binds it. Choose a lower "
                "TOLLGATE_PORT_OFFSET or TOLLGATE_PORT_<NAME>."
            )
        self.up_data(database_url, kafka)
        self.up_emulators()

    def up_emulators(self) -> None:
        """stripe-mock, the Stripe emulator and SMTP capture: whichever is not running."""
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
        self.stripe_sync()

    def stripe_sync(self) -> None:
        """The emulated Stripe account set up as a real one is, by the same command: the
        plans' Products and Prices (the metered plan is bought by its Price's lookup key)
        and the Billing Meters. Webhooks reach checkout by the emulator's own setting."""
        env = {"CHECKOUT_STRIPE_API_KEY": STRIPE_API_KEY, "CHECKOUT_STRIPE_API_BASE": self.cfg.url("stripe")}
        run = subprocess.run(
            [sys.executable, "-m", "tollgate_checkout.stripe_sync"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise SystemExit(f"stripe_sync against the emulator failed:\n{run.stdout}{run.stderr}")

    async def _service_roles(self, database_url: str) -> None:
        """Each service's own login role, with its password; what it may do in its schema
        is granted by its `migrate`."""
        conn = await asyncpg.connect(database_url)
        try:
            database = await conn.fetchval("SELECT current_database()")
            for name, role in ROLES.items():
                password = self.secrets["database_passwords"][name]
                exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                # Utility statements take no parameters: the password is a generated token.
                await conn.execute(f"{verb} ROLE \"{role}\" LOGIN PASSWORD '{password}'")
                await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        finally:
            await conn.close()

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
        """Service `name`'s environment: its own database role and Kafka user, over TLS when
        the stack runs them; the tokens it accepts and the one it calls the keys service with."""
        prefix = name.upper() + "_"
        s, c = self.secrets, self.cfg
        internal = s["internal_tokens"]
        env = {
            "DATABASE_URL": self.service_database_url(name, database_url),
            "DATABASE_OWNER_URL": database_url,
            "HTTP_PORT": str(c.ports[name]),
            "ADMIN_PORT": str(c.ports[f"{name}_admin"]),
            "OPERATOR_TOKENS": f"ops:{s['operator_token']}",
            # Tollgate's own services (and the portal) reading for a customer.
            "INTERNAL_TOKENS": f"portal:{internal['portal']}",
        }
        if self.own_postgres:
            env |= {"DATABASE_SSLMODE": "verify-full", "DATABASE_SSLROOTCERT": str(c.tls_dir / "ca.crt")}
        if self.own_kafka:
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": c.kafka_secure_bootstrap,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": KAFKA_USERS[name],
                "KAFKA_SASL_PASSWORD": s["kafka_passwords"][name],
                "KAFKA_SSL_CAFILE": str(c.tls_dir / "ca.crt"),
            }
        else:
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka
        if name in ("checkout", "ledger", "notifier", "usage_sync", "portal"):
            env |= {"KEYS_INTERNAL_URL": c.url("keys_admin"), "KEYS_TOKEN": internal[name]}
        portal = f"{c.url('portal')}/portal"
        env |= {
            "checkout": {
                "STRIPE_API_KEY": STRIPE_API_KEY,
                "STRIPE_API_BASE": c.url("stripe"),
                "STRIPE_WEBHOOK_SECRET": s["webhook_secret"],
                # Every test and demo buys from 127.0.0.1.
                "CHECKOUTS_PER_ADDRESS_PER_HOUR": "100000",
                "PORTAL_URL": portal,
            },
            "ledger": {
                # For the finance CLI's reconcile, run with this environment.
                "STRIPE_API_KEY": STRIPE_API_KEY,
                "STRIPE_API_BASE": c.url("stripe"),
            },
            "keys": {
                "HASH_SECRET": s["hash_secret"],
                "DELIVERY_KEYS": s["delivery_keys"],
                "GATEWAY_TOKENS": f"gateway:{s['gateway_token']}",
                "INTERNAL_TOKENS": ",".join(f"{caller}:{token}" for caller, token in internal.items()),
            },
            "notifier": {
                "SMTP_PORT": str(c.ports["smtp"]),
                "DELIVERY_KEYS": s["delivery_keys"],
                "CUSTOMER_PORTAL_URL": portal,
            },
            "usage_sync": {"STRIPE_API_KEY": STRIPE_API_KEY, "STRIPE_API_BASE": c.url("stripe")},
            "portal": {
                "PUBLIC_URL": portal,
                "COOKIE_SECURE": "false",  # the local stack is plain HTTP; anywhere else, Secure
                "SESSION_SECRET": s["session_secret"],
                "DELIVERY_KEYS": s["delivery_keys"],
                "LEDGER_URL": c.url("ledger_admin"),
                "CHECKOUT_URL": c.url("checkout_admin"),
                "USAGE_SYNC_URL": c.url("usage_sync_admin"),
                # Every test signs up from 127.0.0.1.
                "LINKS_PER_ADDRESS_PER_HOUR": "100000",
            },
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
