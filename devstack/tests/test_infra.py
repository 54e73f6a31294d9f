"""The local stack's set-up helpers."""

import uuid

import pytest

from tollgate_devstack import infra


def test_a_kafka_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage tool reads "-t -0bQ…" as two options and refuses to format: draw again.
    dashed, plain = uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x08" + bytes(15))
    drawn = iter([dashed, plain])
    monkeypatch.setattr(infra.uuid, "uuid4", lambda: next(drawn))
    cluster_id = infra.kafka_cluster_id()
    assert cluster_id == "CAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22
