"""Where the local stack lives and which loopback ports it uses. All configurable by env."""

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# Every port, shifted by any offset the project uses (up to 1000), stays below Linux's
# ephemeral range (32768-60999). A port inside it can be held by any outgoing connection,
# or by a client that keeps reconnecting to it while nothing listens (TCP connects to
# itself once the kernel picks the same port as source), and then the broker cannot bind
# it when it restarts.
DEFAULT_PORTS = {
    "postgres": 15432,
    "kafka": 19092,
    "kafka_controller": 19093,
    "kafka_secure": 19094,
    "stripe_mock": 12111,
    "stripe_mock_https": 12113,
    "stripe": 12112,
    "smtp": 2525,
    "smtp_http": 8025,
    "checkout": 8101,
    "ledger": 8102,
    "keys": 8103,
    "notifier": 8104,
    "usage_sync": 8105,
    "portal": 8106,
    # Each service's admin listener: operator and internal routes, /metrics.
    "checkout_admin": 9101,
    "ledger_admin": 9102,
    "keys_admin": 9103,
    "notifier_admin": 9104,
    "usage_sync_admin": 9105,
    "portal_admin": 9106,
}
SERVICES = ("checkout", "ledger", "keys", "notifier", "usage_sync", "portal")


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    cache_dir: Path
    ports: dict[str, int]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "StackConfig":
        """TOLLGATE_STACK_DIR (default .stack in the checkout), TOLLGATE_CACHE_DIR (default
        ~/.cache/tollgate: downloads survive a fresh data dir), TOLLGATE_PORT_OFFSET added to
        every default port, TOLLGATE_PORT_<NAME> to set one port."""
        env = dict(os.environ if env is None else env)
        offset = int(env.get("TOLLGATE_PORT_OFFSET", "0"))
        ports = {
            name: int(env.get(f"TOLLGATE_PORT_{name.upper()}", default + offset))
            for name, default in DEFAULT_PORTS.items()
        }
        return cls(
            state_dir=Path(env.get("TOLLGATE_STACK_DIR", REPO_ROOT / ".stack")).resolve(),
            cache_dir=Path(env.get("TOLLGATE_CACHE_DIR", Path.home() / ".cache" / "tollgate")).resolve(),
            ports=ports,
        )

    def ports_in_ephemeral_range(self, local_range: tuple[int, int] | None = None) -> dict[str, int]:
        low, high = local_range or ephemeral_range()
        return {name: port for name, port in self.ports.items() if low <= port <= high}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def database_url(self) -> str:
        return f"postgresql://tollgate@127.0.0.1:{self.ports['postgres']}/tollgate"

    @property
    def kafka_bootstrap(self) -> str:
        """The broker's PLAINTEXT listener, for tests and tools."""
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def kafka_secure_bootstrap(self) -> str:
        """The broker's SASL_SSL listener, which the services use."""
        return f"127.0.0.1:{self.ports['kafka_secure']}"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999
