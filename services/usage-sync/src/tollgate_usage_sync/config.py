from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, secret_validator

from .domain import DEFAULT_METERS_PATH


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_SYNC_")

    http_port: int = 8105
    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"
    meters_file: Path = DEFAULT_METERS_PATH
    window_seconds: int = Field(default=3600, ge=1)
    grace_seconds: int = Field(default=300, ge=0)
    tick_seconds: float = Field(default=5.0, gt=0)

    _secrets = secret_validator("stripe_api_key")
