import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, secret_validator


class Example(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")
    schema_name: str = "example"
    token: SecretStr
    _secrets = secret_validator("token")


class TestSecrets:
    @pytest.mark.parametrize("placeholder", ["changeme", "", "secret"])
    def test_placeholders_are_refused(self, placeholder: str) -> None:
        with pytest.raises(ValidationError, match="placeholder"):
            Example(token=SecretStr(placeholder))

    def test_a_real_secret_is_accepted_and_hidden_from_repr(self) -> None:
        settings = Example(token=SecretStr("k3y-material-xyz"))
        assert "k3y-material-xyz" not in repr(settings)

    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("EXAMPLE_TOKEN", "from-env-123")
        monkeypatch.setenv("EXAMPLE_HTTP_PORT", "9999")
        settings = Example()  # type: ignore[call-arg]
        assert settings.http_port == 9999
        assert settings.token.get_secret_value() == "from-env-123"
