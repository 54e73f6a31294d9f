from pathlib import Path

import pytest

pytest_plugins = ["tollgate_devstack.pytest_plugin"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is unit (no stack), integration (real PostgreSQL, Kafka, SMTP and the
    Stripe emulator, one service's code) or e2e (the running system), so `-m unit` runs
    in seconds without any of them."""
    for item in items:
        where = Path(str(item.fspath)).parts
        if "e2e" in where:
            item.add_marker(pytest.mark.e2e)
        elif "integration" in where or "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
