from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    http_port: int = 8102
