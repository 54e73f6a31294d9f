"""`python -m tollgate_devstack.compose_secrets DIR`: docker-compose's demo secrets, made
on the first `up` into a volume only the stack mounts, and kept after: no secret is
written in docker-compose.yml. DIR/tollgate.env is what each container sources before
starting its service; DIR/postgres_password is PostgreSQL's (POSTGRES_PASSWORD_FILE)."""

import secrets
import shlex
import sys
from pathlib import Path

from cryptography.fernet import Fernet

STRIPE_API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dcTollgate"  # the emulator's; not a real key


def token() -> str:
    return secrets.token_urlsafe(32)


def env(password: str) -> dict[str, str]:
    database = f"postgresql://tollgate:{password}@postgres:5432/tollgate"
    webhook, operator, delivery = "whsec_" + secrets.token_hex(24), token(), Fernet.generate_key().decode()
    internal = {name: token() for name in ("checkout", "ledger", "notifier", "usage_sync", "portal")}
    common = {
        "DATABASE_URL": database,
        "DATABASE_SSLMODE": "disable",  # the demo's PostgreSQL serves no TLS; production's must
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "HTTP_HOST": "0.0.0.0",
        "ADMIN_HOST": "0.0.0.0",
        "OPERATOR_TOKENS": f"ops:{operator}",
        "INTERNAL_TOKENS": f"portal:{internal['portal']}",
        "KEYS_INTERNAL_URL": "http://keys:9103",
    }
    own = {
        "checkout": {
            "STRIPE_API_KEY": STRIPE_API_KEY,
            "STRIPE_API_BASE": "http://stripe-emulator:12112",
            "STRIPE_WEBHOOK_SECRET": webhook,
            "KEYS_TOKEN": internal["checkout"],
            "PORTAL_URL": "http://127.0.0.1:8106/portal",
        },
        "ledger": {
            "STRIPE_API_KEY": STRIPE_API_KEY,
            "STRIPE_API_BASE": "http://stripe-emulator:12112",
            "KEYS_TOKEN": internal["ledger"],
        },
        "keys": {
            "HASH_SECRET": token(),
            "DELIVERY_KEYS": delivery,
            "INTERNAL_TOKENS": ",".join(f"{name}:{value}" for name, value in internal.items()),
        },
        "notifier": {
            "SMTP_HOST": "smtp-capture",
            "SMTP_PORT": "2525",
            "DELIVERY_KEYS": delivery,
            "CUSTOMER_PORTAL_URL": "http://127.0.0.1:8106/portal",
            "KEYS_TOKEN": internal["notifier"],
        },
        "usage_sync": {
            "STRIPE_API_KEY": STRIPE_API_KEY,
            "STRIPE_API_BASE": "http://stripe-emulator:12112",
            "KEYS_TOKEN": internal["usage_sync"],
        },
        "portal": {
            "KEYS_TOKEN": internal["portal"],
            "SESSION_SECRET": token(),
            "DELIVERY_KEYS": delivery,
            "PUBLIC_URL": "http://127.0.0.1:8106/portal",
            "COOKIE_SECURE": "false",  # the demo is plain HTTP on 127.0.0.1
            "LEDGER_URL": "http://ledger:9102",
            "CHECKOUT_URL": "http://checkout:9101",
            "USAGE_SYNC_URL": "http://usage-sync:9105",
        },
    }
    out = {"STRIPE_EMULATOR_WEBHOOK_SECRET": webhook, "OPERATOR_TOKEN": operator}
    for service, values in own.items():
        prefix = service.upper() + "_"
        out |= {prefix + k: v for k, v in (common | values).items()}
    return out


def main(directory: str) -> int:
    where = Path(directory)
    env_file, pg_file = where / "tollgate.env", where / "postgres_password"
    if env_file.exists() and pg_file.exists():
        print("compose secrets: kept from an earlier up")
        return 0
    password = secrets.token_urlsafe(24)
    pg_file.write_text(password)
    env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env(password).items()))
    for path in (env_file, pg_file):
        path.chmod(0o644)  # read by the services' and PostgreSQL's users, in a volume only the stack mounts
    print(f"compose secrets: made in {where}; the operator token is OPERATOR_TOKEN in tollgate.env")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/secrets"))
