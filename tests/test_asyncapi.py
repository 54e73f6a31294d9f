"""Every service's AsyncAPI document is generated from the subscriptions and topics its
runtime runs, and the committed copy in docs/asyncapi/ is current."""

from importlib.metadata import version
from pathlib import Path

import pytest

from tollgate_shared import asyncapi
from tollgate_shared.topics import SERVICES, spec_of

DOCS = Path(__file__).resolve().parents[1] / "docs" / "asyncapi"


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_is_current(service: str) -> None:
    """Regenerate with `python -m tollgate_<service> asyncapi --out docs/asyncapi/<service>.yaml`."""
    generated = asyncapi.to_yaml(asyncapi.document(spec_of(service), version(f"tollgate-{service}")))
    assert (DOCS / f"{service}.yaml").read_text() == generated, f"docs/asyncapi/{service}.yaml is stale"


@pytest.mark.parametrize("service", SERVICES)
def test_every_topic_consumed_or_published_has_its_messages_schemas(service: str) -> None:
    spec = spec_of(service)
    doc = asyncapi.document(spec, "0")
    topics = {s.topic for s in spec.subscriptions} | set(spec.publishes)
    assert set(doc["channels"]) == {t.name for t in topics}
    for topic in topics:
        for message in topic.messages:
            assert doc["components"]["messages"][message.__name__]["payload"] == {
                "$ref": f"#/components/schemas/{message.__name__}"
            }
            assert message.__name__ in doc["components"]["schemas"]
    received = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "receive"}
    assert received == {f"#/channels/{s.topic.name}" for s in spec.subscriptions}
