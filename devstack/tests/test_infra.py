"""The local stack's set-up helpers."""

import uuid

import pytest

from tollgate_devstack import infra
from tollgate_devstack.config import StackConfig
from tollgate_devstack.processes import FREE_PORTS


def test_a_kafka_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage tool reads "-t -0bQ…" as two options and refuses to format: draw again.
    dashed, plain = uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x08" + bytes(15))
    drawn = iter([dashed, plain])
    monkeypatch.setattr(infra.uuid, "uuid4", lambda: next(drawn))
    cluster_id = infra.kafka_cluster_id()
    assert cluster_id == "CAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22


@pytest.mark.parametrize("offset", [0, 200, 250, 300, 400, 500, 1000])  # every offset the project uses
def test_no_stack_port_lies_where_the_kernel_picks_outgoing_ports(offset: int) -> None:
    # Linux's default range, not this machine's: the ports must be safe wherever the stack runs.
    cfg = StackConfig.from_env({"TOLLGATE_PORT_OFFSET": str(offset)})
    assert cfg.ports_in_ephemeral_range((32768, 60999)) == {}
    assert max(cfg.ports.values()) < FREE_PORTS[0]  # free_port() never hands out a stopped stack's port


def test_a_port_set_into_the_ephemeral_range_is_named() -> None:
    cfg = StackConfig.from_env({"TOLLGATE_PORT_KAFKA": "59092"})
    assert cfg.ports_in_ephemeral_range((32768, 60999)) == {"kafka": 59092}
