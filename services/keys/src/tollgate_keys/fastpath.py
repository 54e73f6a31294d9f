"""POST /v1/keys/validate as a bare ASGI route in front of the FastAPI app.

Validation is on the hot path of every call our users' customers make, and profiling
put FastAPI's routing and dependency resolution at several times the cost of the
validation itself (tollgate_shared.fastpath). The route's documentation stays with
FastAPI (api.py).
"""

from starlette.types import ASGIApp, Scope

from tollgate_shared.fastpath import Answer, FastRoute

from . import metrics
from .api import ValidateRequest, Validator

PATH = "/v1/keys/validate"


def validate_route(app: ASGIApp, validator: Validator) -> FastRoute[ValidateRequest]:
    async def handle(request: ValidateRequest, scope: Scope) -> Answer:
        return 200, await validator(request, dict(scope.get("headers") or ()))

    def observe(status: int, seconds: float) -> None:
        if status == 200:
            metrics.VALIDATE_SECONDS.observe(seconds)
        elif status in (400, 413, 422):
            metrics.REJECTED.labels(str(status)).inc()

    return FastRoute(app, method="POST", path=PATH, model=ValidateRequest, handle=handle, observe=observe)
