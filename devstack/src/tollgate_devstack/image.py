"""`make image` and `make image-test`: the production image built, then proved.

image-test starts PostgreSQL, Kafka and the emulators of a stack of its own
(`.stack-image`, ports offset by 400), runs every service as a container of the image
(read-only root filesystem, no capabilities, a non-root user) with the same settings
the local stack gives its processes, waits for each `/readyz`, and runs the demo
against the containers.
"""

import asyncio
import os
import subprocess
import time
from pathlib import Path

import httpx

from . import containers
from .config import REPO_ROOT, SERVICES, StackConfig
from .demo import Demo, StepFailed
from .infra import say
from .processes import wait_until
from .stack import Stack

IMAGE = os.environ.get("TOLLGATE_IMAGE", "localhost/tollgate:dev")
LOCAL_BASE = "localhost/tollgate-python:3.11-bookworm"
DEMO_ENV = {"USAGE_SYNC_WINDOW_SECONDS": "10", "USAGE_SYNC_GRACE_SECONDS": "2", "USAGE_SYNC_TICK_SECONDS": "1"}


def build() -> None:
    """The image; with podman (no registry reachable) on a base built from Debian's packages."""
    base = None
    if "podman" in containers.engine()[0]:
        exists = subprocess.run([*containers.engine(), "image", "exists", LOCAL_BASE], check=False).returncode == 0
        if not exists:
            say(f"building {LOCAL_BASE} from Debian's packages (no registry to pull python:3.11-slim from)")
            subprocess.run([str(REPO_ROOT / "deploy" / "image" / "local-base.sh"), LOCAL_BASE], check=True)
        base = LOCAL_BASE
    say(f"building {IMAGE}")
    os.chdir(REPO_ROOT)
    containers.build(IMAGE, "service", base)


def test() -> int:
    started = time.monotonic()
    build()
    env = {"TOLLGATE_PORT_OFFSET": "400", **os.environ}
    env.setdefault("TOLLGATE_STACK_DIR", str(REPO_ROOT / ".stack-image"))
    stack = Stack(StackConfig.from_env(env), service_env=DEMO_ENV)
    running = [service_container(stack, name) for name in SERVICES]
    try:
        say("starting PostgreSQL, Kafka and the emulators")
        stack.up_infra()
        for c in running:
            c.run()
        for name, c in zip(SERVICES, running, strict=True):
            url = f"{stack.cfg.url(name)}/readyz"
            wait_until(f"{c.name}", lambda u=url: httpx.get(u, timeout=2).status_code == 200, 90, c.logs)  # type: ignore[misc]
        say("every service's container is ready; the demo, against them")
        asyncio.run(Demo(stack.endpoints()).run())
    except StepFailed as exc:
        print(f"IMAGE TEST FAILED: {exc}")
        for c in running:
            print(f"--- {c.name}\n{c.logs()}")
        return 1
    finally:
        for c in running:
            c.stop()
        stack.down()
    say(f"image test passed in {time.monotonic() - started:.0f}s")
    return 0


def service_container(stack: Stack, name: str) -> containers.Container:
    env = stack.env_for(name, stack.cfg.database_url, stack.cfg.kafka_bootstrap)
    return containers.Container(
        name=f"tollgate-image-test-{name.replace('_', '-')}",
        image=IMAGE,
        command=["python3", "-m", f"tollgate_{name}"],
        env=env,
        mounts=(str(Path(stack.cfg.tls_dir)),),
    )
