"""`python -m tollgate_ledger.cli <command>`: the ledger for finance and operators.

export --period 2026-11 | --from ISO --to ISO  [--asset USD/2] [--format csv|parquet] [--out FILE]
trial-balance [--period P | --as-of ISO]   exits 1 if any asset does not sum to zero
revenue --period P                         the deferred-revenue roll-forward; exits 1 if it does not tie
statement --account LEDGER_ACCOUNT --from ISO --to ISO
close --period P                           closes the period; exits 1 if refused
verify                                     exits 1 if the chain or totals are broken
reconcile --from ISO --to ISO              exits 1 if anything is unmatched with Stripe

Every command reads LEDGER_DATABASE_URL (and LEDGER_SCHEMA_NAME); export reads
LEDGER_GL_CODES_FILE if set; only reconcile needs LEDGER_STRIPE_API_KEY (and
LEDGER_STRIPE_API_BASE). export streams: its memory does not grow with the period.
"""

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import stripe

from tollgate_shared import db

from . import exports, finance, repo
from .config import BookSettings, ReconcileSettings
from .reconcile import reconcile


def stripe_client(settings: ReconcileSettings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(), base_addresses={"api": settings.stripe_api_base}
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tollgate-ledger", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "command", choices=["export", "trial-balance", "revenue", "statement", "close", "verify", "reconcile"]
    )
    p.add_argument("--period")
    p.add_argument("--from", dest="start", type=datetime.fromisoformat)
    p.add_argument("--to", dest="end", type=datetime.fromisoformat)
    p.add_argument("--as-of", dest="as_of", type=datetime.fromisoformat)
    p.add_argument("--account")
    p.add_argument("--asset", help="export: only this unit (USD/2, CALLS)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = ReconcileSettings() if args.command == "reconcile" else BookSettings()  # type: ignore[call-arg]
    return asyncio.run(run(args, settings))


async def export(conn: Any, selection: exports.Selection, gl: exports.GlCodes, args: argparse.Namespace) -> int:
    """Stream the export to --out (or stdout); returns the postings written."""
    counted = 0

    async def counting() -> AsyncIterator[list[dict[str, Any]]]:
        nonlocal counted
        async for chunk in exports.rows(conn, selection, gl):
            counted += len(chunk)
            yield chunk

    # A CLI writing its one output: blocking writes are what it does.
    with open(args.out, "wb") if args.out else contextlib.nullcontext(sys.stdout.buffer) as sink:  # noqa: ASYNC230
        if args.format == "parquet":
            await exports.parquet_file(counting(), sink)
        else:
            async for piece in exports.csv_chunks(counting()):
                sink.write(piece)
    return counted


async def run(args: argparse.Namespace, settings: BookSettings) -> int:
    pool = await db.connect(settings)
    try:
        async with pool.acquire() as conn:
            match args.command:
                case "export":
                    selection = exports.Selection(args.period, args.start, args.end, args.asset)
                    written = await export(conn, selection, exports.GlCodes.load(settings.gl_codes_file), args)
                    print(f"export: {written} postings", file=sys.stderr)
                    return 0
                case "trial-balance":
                    return print_trial_balance(await repo.trial_balance(conn, as_of=args.as_of, period=args.period))
                case "revenue":
                    return print_revenue(await finance.revenue(conn, args.period))
                case "statement":
                    st = await repo.statement(conn, args.account, args.start, args.end)
                    if st is None:
                        print(f"statement: no account {args.account!r}", file=sys.stderr)
                        return 1
                    print(f"opening\t{st.opening}\t{st.asset}")
                    for line in st.lines:
                        when, ref = line.business_time.isoformat(), line.source_ref or ""
                        print(f"{when}\t{line.kind}\t{line.amount}\t{line.balance}\t{ref}")
                    print(f"closing\t{st.closing}\t{st.asset}")
                    return 0
                case "close":
                    async with conn.transaction():
                        try:
                            closed = await finance.close_period(conn, args.period)
                        except finance.CloseRefused as exc:
                            print(f"close: refused: {exc}", file=sys.stderr)
                            return 1
                    print(f"close: {closed.period} closed, {closed.accounts} accounts")
                    print(f"close: stamped with chain seq {closed.chain_seq} hash {closed.chain_hash}")
                    return 0
                case "verify":
                    problems = await finance.verify(conn)
                    for problem in problems:
                        print(f"problem\t{problem}")
                    print(f"verify: {len(problems)} problem(s)")
                    return 1 if problems else 0
                case "reconcile":
                    assert isinstance(settings, ReconcileSettings)
                    unmatched = await reconcile(conn, stripe_client(settings), args.start, args.end)
                    for item in unmatched:
                        print(f"unmatched\t{item}")
                    print(f"reconcile: {len(unmatched)} unmatched item(s)")
                    return 1 if unmatched else 0
    finally:
        await pool.close()
    return 2


def print_trial_balance(tb: repo.TrialBalance) -> int:
    print("asset\taccount\ttype\topening\tdebits\tcredits\tclosing")
    for r in tb.rows:
        print(f"{r.asset}\t{r.account_id}\t{r.type}\t{r.opening}\t{r.debits}\t{r.credits}\t{r.closing}")
    for asset, (debits, credits) in tb.totals().items():
        print(f"total\t{asset}\tdebits={debits}\tcredits={credits}\t{'ok' if debits == credits else 'OFF'}")
    if off := tb.off_balance():
        print(f"trial-balance: does not balance: {off}", file=sys.stderr)
        return 1
    return 0


ROLL_FORWARD = (
    ("opening", "opening"),
    ("+ prepayments", "prepayments"),
    ("- recognised from usage", "recognised_usage"),
    ("- recognised from expiry", "recognised_expiry"),
    ("- refunds", "refunds"),
    ("- disputes lost", "disputes_lost"),
    ("+ corrections", "corrections"),
    ("= closing", "closing"),
    ("prepaid accounts hold", "prepaid_closing"),
    ("revenue booked", "revenue_booked"),
)


def print_revenue(lines: list[finance.RollForward]) -> int:
    """Each currency's roll-forward, in minor units; 1 if any does not tie."""
    for rf in lines:
        for label, attr in ROLL_FORWARD:
            print(f"{rf.period}\t{rf.asset}\t{label}\t{getattr(rf, attr)}")
        for problem in rf.problems:
            print(f"revenue: does not tie: {problem}", file=sys.stderr)
    return 0 if all(rf.tied for rf in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())
