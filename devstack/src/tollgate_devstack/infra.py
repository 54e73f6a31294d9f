"""Real infrastructure on loopback, without Docker: PostgreSQL, Apache Kafka, stripe-mock.

Each `ensure_*` installs what is missing (Debian's package, Maven Central jars, a Go
module) into a cache outside the data directory, so a second start downloads nothing.
"""

import base64
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

from .config import REPO_ROOT, StackConfig
from .processes import Processes, port_open, wait_until
from .tls import Certificates

KAFKA_POM = REPO_ROOT / "devstack" / "kafka" / "pom.xml"
STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock@v0.203.0"


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        _apt_install("postgresql", "PostgreSQL")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent


def debian_command(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` for it on first use."""
    found = shutil.which(command)
    if not found:
        _apt_install(package, command)
        found = shutil.which(command)
    assert found, f"{command} did not install"
    return found


def start_postgres(cfg: StackConfig, procs: Processes, certs: Certificates) -> None:
    """PostgreSQL on loopback with TLS on. The stack's own superuser (`tollgate`, the
    migrations' owner) is trusted on loopback; every other role, such as each service's
    own, must give its password."""
    port = cfg.ports["postgres"]
    if procs.pid("postgres") and port_open(port):
        return
    bindir = postgres_bin()
    # PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
    user = "postgres" if os.geteuid() == 0 else None
    data = postgres_data_dir(cfg.state_dir, user)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _own(data, user)
        say(f"initdb {data}")
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "tollgate",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
        )
    _postgres_tls_and_auth(data, certs, user)
    procs.start(
        "postgres",
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "ssl=on",
        ],
        user=user,
        port=port,
    )
    wait_until("postgres", lambda: port_open(port), 60, lambda: procs.log_tail("postgres"))
    _create_database(bindir, port)


def _postgres_tls_and_auth(data: Path, certs: Certificates, user: str | None) -> None:
    """The server certificate where PostgreSQL looks for it (its data directory, owned by
    its user, the key private), and who must give a password: every role but the
    stack's own superuser logs in over TLS only, with its password."""
    shutil.copyfile(certs.cert, data / "server.crt")
    shutil.copyfile(certs.key, data / "server.key")
    (data / "server.key").chmod(0o600)
    (data / "pg_hba.conf").write_text(
        "# TYPE DATABASE USER     ADDRESS        METHOD\n"
        "host    all      tollgate 127.0.0.1/32   trust\n"
        "hostssl all      all      127.0.0.1/32   scram-sha-256\n"
    )
    for path in (data / "server.crt", data / "server.key", data / "pg_hba.conf"):
        _own(path, user)


def _create_database(bindir: Path, port: int) -> None:
    def query(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "tollgate", "-d", "postgres", "-tAc", sql],
            capture_output=True,
            text=True,
        )

    # The port opens before recovery ends; wait until a query really answers.
    wait_until("postgres accepting connections", lambda: query("SELECT 1").returncode == 0, 60)
    if query("SELECT 1 FROM pg_database WHERE datname = 'tollgate'").stdout.strip() != "1":
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tollgate", "tollgate"], check=True
        )


def postgres_data_dir(state_dir: Path, user: str | None) -> Path:
    """Where this stack's cluster lives: `<state dir>/pg`, unless `user` cannot reach it.

    A root user's checkout under a private home (mode 700) is out of the `postgres`
    user's reach. Then the cluster lives under /var/tmp/tollgate instead, in a folder
    named for the state directory; `<state dir>/pg-elsewhere` says where, and a stale
    folder with no such note (the state directory was deleted) is started afresh.
    """
    inside = state_dir / "pg"
    if user is None or _reachable(state_dir, user):
        return inside
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    outside = Path("/var/tmp/tollgate") / digest / "pg"  # noqa: S108 - a fixed, root-made place
    note = state_dir / "pg-elsewhere"
    if not note.exists():
        say(f"{state_dir} is private to root: PostgreSQL ({user}) keeps its data in {outside}")
        shutil.rmtree(outside.parent, ignore_errors=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        note.write_text(f"{outside}\n")
    outside.parent.parent.mkdir(mode=0o755, exist_ok=True)
    outside.parent.mkdir(mode=0o700, exist_ok=True)
    _own(outside.parent, user)
    return outside


def _reachable(path: Path, user: str) -> bool:
    """Whether `user` may enter every existing directory on the way to `path`."""
    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid, *os.getgrouplist(user, pw.pw_gid)}
    for directory in [p for p in (path, *path.parents) if p.exists()]:
        st = directory.stat()
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _own(path: Path, user: str | None) -> None:
    if user:
        pw = pwd.getpwnam(user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)


# --- Kafka --------------------------------------------------------------------------------


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text())
    assert match
    return match.group(1)


def kafka_libs(cfg: StackConfig) -> Path:
    lib = cfg.cache_dir / f"kafka-{kafka_version()}" / "lib"
    marker = lib / ".complete"
    if not marker.exists():
        say(f"fetching Apache Kafka {kafka_version()} jars from Maven Central")
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is required to run Kafka locally")
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}",
            ],
            check=True,
        )
        marker.touch()
    return lib


def kafka_cluster_id() -> str:
    """A random cluster id as Kafka makes them (`Uuid.randomUuid`): URL-safe base64 of 16
    bytes, never starting with "-", which the storage tool would read as an option (one
    id in 64 did, and failed a fresh CI run)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka(cfg: StackConfig, procs: Processes, certs: Certificates, users: dict[str, str]) -> None:
    """One broker (and controller) with two listeners: SASL_SSL (SCRAM-SHA-512, the
    stack's certificate) for the services, each logging in as a user of its own and held
    to its ACLs; and PLAINTEXT on loopback for tests and tools that read topics as they are."""
    port, controller, secure = cfg.ports["kafka"], cfg.ports["kafka_controller"], cfg.ports["kafka_secure"]
    if procs.pid("kafka") and port_open(port):
        return
    lib = kafka_libs(cfg)
    home = cfg.state_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure},"
                f"CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
                # Each service's SCRAM user may do only what its ACLs allow (tollgate_shared.acls);
                # PLAINTEXT, the tests' and tools' listener and the broker's own, is a super user.
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users=User:ANONYMOUS",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={certs.server_pem}",
                f"log.dirs={data}",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.cleaner.min.cleanable.ratio=0.1",
                "",
            ]
        )
    )
    log4j = home / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\nappender.out.type=Console\n"
        "appender.out.name=out\nappender.out.layout.type=PatternLayout\n"
        "appender.out.layout.pattern=[%d] %p %m (%c)%n\nlogger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
    )
    classpath = f"{lib}/*"
    java = ["java", "-XX:TieredStopAtLevel=1", "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}"]
    scram = [f"SCRAM-SHA-512=[name={name},password={password}]" for name, password in users.items()]
    known_users = home / "scram-users"
    if not (data / "meta.properties").exists():
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                kafka_cluster_id(),
                "-c",
                str(props),
                *(arg for credential in scram for arg in ("--add-scram", credential)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        known_users.write_text("\n".join(sorted(users)))
    procs.start(
        "kafka",
        [
            "java",
            "-Xms256m",
            "-Xmx768m",
            # Only the quick client compiler: a dev broker shares a laptop's cores with
            # everything it serves, and the optimizing compiler's work after each start
            # competes with them for minutes while buying a dev broker nothing it needs.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        port=port,
    )
    wait_until("kafka", lambda: port_open(port), 90, lambda: procs.log_tail("kafka"))
    if not known_users.exists() or set(known_users.read_text().split()) != set(users):
        # A broker formatted before it had these users: add them through the broker.
        say("adding the services' Kafka users")
        for name, password in users.items():
            add_kafka_user(cfg, name, password)
        known_users.write_text("\n".join(sorted(users)))


def add_kafka_user(cfg: StackConfig, name: str, password: str) -> None:
    """A SCRAM-SHA-512 user, added through the running broker's PLAINTEXT listener."""
    subprocess.run(
        [
            "java",
            "-cp",
            f"{kafka_libs(cfg)}/*",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            cfg.kafka_bootstrap,
            "--alter",
            "--add-config",
            f"SCRAM-SHA-512=[iterations=8192,password={password}]",
            "--entity-type",
            "users",
            "--entity-name",
            name,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- stripe-mock ----------------------------------------------------------------------------


def stripe_mock_binary(cfg: StackConfig) -> Path:
    binary = cfg.cache_dir / "bin" / "stripe-mock"
    if not binary.exists():
        if shutil.which("go") is None:
            raise RuntimeError("Go is required to build stripe-mock")
        say(f"building {STRIPE_MOCK_MODULE} through the Go module proxy")
        subprocess.run(
            ["go", "install", STRIPE_MOCK_MODULE], check=True, env={**os.environ, "GOBIN": str(binary.parent)}
        )
    return binary


AXE_CORE = "axe-core@4.14.1"
ASYNCAPI_CLI = "@asyncapi/cli@4.1.1"


def npm_tool(cfg: StackConfig, package: str, path: str) -> Path:
    """A file of an npm package, installed into the cache once (a directory per package)."""
    prefix = cfg.cache_dir / "npm" / package.split("@")[1 if package.startswith("@") else 0].replace("/", "-")
    found = prefix / "node_modules" / path
    if not found.exists():
        if shutil.which("npm") is None:
            raise RuntimeError(f"npm is required to fetch {package}")
        say(f"fetching {package} from npm")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), package],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return found


def axe_core_script(cfg: StackConfig) -> Path:
    """axe-core, the accessibility checker browsers' own tools use."""
    return npm_tool(cfg, AXE_CORE, "axe-core/axe.min.js")


def asyncapi_cli(cfg: StackConfig) -> Path:
    """The official AsyncAPI CLI, which validates the documents."""
    return npm_tool(cfg, ASYNCAPI_CLI, ".bin/asyncapi")


def chromium_binary() -> str:
    """Debian's Chromium, for the browser tests (Playwright's own download is not reachable)."""
    return debian_command("chromium", "chromium")


HELM_MODULE = "helm.sh/helm/v4/cmd/helm@v4.3.2"


def helm_binary(cfg: StackConfig) -> Path:
    """Helm, built from the Go module proxy (a pinned version) on first use."""
    binary = cfg.cache_dir / "bin" / "helm"
    if not binary.exists():
        if shutil.which("go") is None:
            raise RuntimeError("Go is required to build helm")
        say(f"building {HELM_MODULE} through the Go module proxy (a few minutes, once)")
        subprocess.run(["go", "install", HELM_MODULE], check=True, env={**os.environ, "GOBIN": str(binary.parent)})
    return binary


def start_stripe_mock(cfg: StackConfig, procs: Processes) -> None:
    port = cfg.ports["stripe_mock"]
    if procs.pid("stripe-mock") and port_open(port):
        return
    # Both listeners pinned to loopback: by default stripe-mock also serves HTTPS on *:12112.
    procs.start(
        "stripe-mock",
        [
            str(stripe_mock_binary(cfg)),
            "-http-addr",
            f"127.0.0.1:{port}",
            "-https-addr",
            f"127.0.0.1:{cfg.ports['stripe_mock_https']}",
        ],
        port=port,
    )
    wait_until("stripe-mock", lambda: port_open(port), 30, lambda: procs.log_tail("stripe-mock"))


def _apt_install(package: str, what: str) -> None:
    """Install a Debian package for one of its commands, never starting a daemon it brings
    (prometheus would listen on every interface): a policy-rc.d refuses for the install."""
    say(f"installing {what} from Debian's packages")
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        _root(["sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {policy} && chmod 755 {policy}"])
    try:
        _root(["apt-get", "update", "-q"])
        _root(["apt-get", "install", "-y", "-q", package], env={"DEBIAN_FRONTEND": "noninteractive"})
    finally:
        if ours:
            _root(["rm", "-f", str(policy)])


def _root(argv: list[str], env: dict[str, str] | None = None) -> None:
    if os.geteuid() != 0:
        argv = ["sudo", *argv]
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})})
