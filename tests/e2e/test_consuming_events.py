"""The guide's example consumer (examples/balance_mirror.py), run against the stack as a
service of someone else's would run it: its copy of a customer's balance is the
ledger's, to the unit and the version, and a copy rebuilt from the start agrees."""

import asyncio
import importlib.util
import secrets
from pathlib import Path
from typing import Any

from tollgate_devstack.config import REPO_ROOT
from tollgate_devstack.demo import Demo, eventually

from .helpers import rows

spec = importlib.util.spec_from_file_location("balance_mirror", REPO_ROOT / "examples" / "balance_mirror.py")
assert spec is not None and spec.loader is not None
balance_mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(balance_mirror)


async def test_the_example_keeps_the_ledgers_balances(stack: dict[str, Any], demo: Demo) -> None:
    mirror, stop = balance_mirror.BalanceMirror(), asyncio.Event()
    following = asyncio.create_task(balance_mirror.follow(mirror, stack["kafka"], stop=stop))
    try:
        email = f"mirror+{secrets.token_hex(4)}@example.com"
        session = await demo.buy("starter", email)
        await demo.pay(session["id"])
        key, _ = await demo.key_from_email(email)
        assert (await demo.validate(key, 7))["isValid"]
        ledger = await demo.balance_equal(session["customer"], 993)

        def mirrored() -> Any:
            return mirror.credits_of(session["customer"])

        copy = await eventually(
            "the mirror to have the balance", _now(mirrored), until=lambda b: b["version"] == ledger["version"]
        )
        assert (copy["current"], copy["available"], copy["pending"]) == (993, 993, 0)
        # Published, so the ledger's outbox no longer holds it: nothing could add it twice.
        kept = await rows(stack, "ledger", "SELECT count(*) FROM outbox WHERE key LIKE $1", f"%{session['customer']}%")
        assert kept[0][0] == 0
    finally:
        stop.set()
        await following

    # A copy rebuilt from the start of the compacted topic comes to the same state.
    rebuilt, stop = balance_mirror.BalanceMirror(), asyncio.Event()
    following = asyncio.create_task(balance_mirror.follow(rebuilt, stack["kafka"], stop=stop))
    try:
        again = await eventually(
            "the rebuilt copy", _now(lambda: rebuilt.credits_of(session["customer"])),
            until=lambda b: b["version"] == ledger["version"],
        )  # fmt: skip
        assert again == copy
    finally:
        stop.set()
        await following


def _now(read: Any) -> Any:
    async def probe() -> Any:
        return read()

    return probe


def test_the_example_needs_no_tollgate_code() -> None:
    source = (Path(REPO_ROOT) / "examples" / "balance_mirror.py").read_text()
    assert "tollgate_" not in source
