"""The one place that wires the ledger."""

from pathlib import Path

from fastapi import FastAPI

from tollgate_shared.runtime import Runtime, service_app

from . import api, consumers
from .config import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("ledger", "ledger", settings, MIGRATIONS)
    consumers.register(runtime.broker, runtime)
    return service_app(runtime, api.router(runtime))
