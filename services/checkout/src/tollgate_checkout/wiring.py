from dataclasses import dataclass

from tollgate_shared.runtime import Runtime

from .config import Settings
from .domain import Catalog
from .stripe_gateway import StripeCheckout


@dataclass(frozen=True)
class Deps:
    settings: Settings
    runtime: Runtime
    catalog: Catalog
    gateway: StripeCheckout
