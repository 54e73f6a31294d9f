from pathlib import Path

from tollgate_ledger.spec import asyncapi_yaml

COMMITTED = Path(__file__).resolve().parents[4] / "docs" / "asyncapi" / "ledger.yaml"


def test_the_committed_asyncapi_document_matches_the_contracts() -> None:
    """Regenerate with `python -m tollgate_ledger.cli asyncapi --out docs/asyncapi/ledger.yaml`."""
    assert COMMITTED.read_text() == asyncapi_yaml(), "docs/asyncapi/ledger.yaml is stale: regenerate it"


def test_the_document_describes_both_published_topics_with_their_payloads() -> None:
    doc = asyncapi_yaml()
    for name in ("ledger.balances", "ledger.alerts", "BalanceUpdated", "BalanceAlert", "available_conservative"):
        assert name in doc
