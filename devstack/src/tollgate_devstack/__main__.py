"""`python -m tollgate_devstack up|stop|status|demo|run|env|image|image-test`."""

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from .demo import Demo, StepFailed
from .infra import say
from .stack import Stack

# The demo closes usage windows in seconds; production's default is one hour.
DEMO_SERVICE_ENV = {"USAGE_SYNC_WINDOW_SECONDS": "10", "USAGE_SYNC_GRACE_SECONDS": "2", "USAGE_SYNC_TICK_SECONDS": "1"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="tollgate-stack")
    parser.add_argument("command", choices=["up", "stop", "status", "demo", "run", "env", "image", "image-test"])
    args = parser.parse_args()
    # A supervisor's SIGTERM (make passes it on) stops the stack as Ctrl-C does: through
    # the `finally` below, whatever step it arrives in.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.command in ("image", "image-test"):
        from . import image

        if args.command == "image":
            image.build()
            return 0
        return image.test()
    stack = Stack(service_env=DEMO_SERVICE_ENV)
    match args.command:
        case "up":
            up(stack)
            print(json.dumps({k: v for k, v in stack.endpoints().items() if "://" in v or k == "kafka"}, indent=2))
        case "stop":
            stack.down()
        case "status":
            print(json.dumps(stack.running(), indent=2))
        case "env":
            print(json.dumps(stack.endpoints(), indent=2))
        case "demo":
            was_running = all(stack.running().values())
            try:
                up(stack)
                return run_demo(stack)
            finally:
                if not was_running:
                    stack.down()
        case "run":
            try:
                up(stack)
                demo = Demo(stack.endpoints())
                code = run_demo(stack, demo)
                ep = stack.endpoints()
                link = (
                    asyncio.run(Demo(ep).portal_link(demo.customer_email))
                    if code == 0 and demo.customer_email
                    else None
                )
                say(
                    f"the stack is up. The customer portal: {ep['portal_url']} (sign up there, or sign in as the "
                    f"demo's customer with this one-use link: {link}). Mail arrives at {ep['smtp_http']}/api/messages; "
                    f"the API at {ep['checkout']}/v1/checkout/sessions. Logs: {stack.procs.log_dir}. "
                    "Ctrl-C stops everything."
                )
                if code == 0:
                    wait_for_interrupt()
                return code
            finally:
                stack.down()
    return 0


def up(stack: Stack) -> None:
    say("starting PostgreSQL, Kafka, stripe-mock, the Stripe emulator and SMTP capture")
    stack.up_infra()
    say("starting checkout, ledger, keys, notifier, usage-sync")
    stack.up_services()


def run_demo(stack: Stack, demo: Demo | None = None) -> int:
    try:
        asyncio.run((demo or Demo(stack.endpoints())).run())
    except StepFailed as exc:
        print(f"DEMO FAILED: {exc}", file=sys.stderr)
        return 1
    print("demo: every step succeeded")
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def wait_for_interrupt() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("[stack] interrupted; everything it started is stopped", flush=True)
        sys.exit(130)
