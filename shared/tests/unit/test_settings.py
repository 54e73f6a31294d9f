import secrets

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, fernet_keys_validator, multi_fernet, secret_validator


class Example(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")
    schema_name: str = "example"
    token: SecretStr
    delivery_keys: SecretStr | None = None
    _secrets = secret_validator("token")
    _fernet = fernet_keys_validator("delivery_keys")


GOOD = secrets.token_urlsafe(32)


class TestSecrets:
    @pytest.mark.parametrize("placeholder", ["changeme", "", "secret"])
    def test_placeholders_are_refused(self, placeholder: str) -> None:
        with pytest.raises(ValidationError, match="placeholder"):
            Example(token=SecretStr(placeholder))

    @pytest.mark.parametrize(
        "weak",
        [
            "short-but-real1",  # 15 characters
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # long, one character over and over
            "abababababababababababab",  # long, two characters: 24 bits
            "passwordpassword",  # 16 characters of a word
        ],
    )
    def test_short_or_guessable_secrets_are_refused(self, weak: str) -> None:
        with pytest.raises(ValidationError, match="too weak"):
            Example(token=SecretStr(weak))

    def test_a_real_secret_is_accepted_and_hidden_from_repr(self) -> None:
        settings = Example(token=SecretStr(GOOD))
        assert GOOD not in repr(settings)

    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("EXAMPLE_TOKEN", GOOD)
        monkeypatch.setenv("EXAMPLE_HTTP_PORT", "9999")
        settings = Example()  # type: ignore[call-arg]
        assert settings.http_port == 9999
        assert settings.token.get_secret_value() == GOOD


class TestNamedTokens:
    def test_each_token_is_named_and_real(self) -> None:
        Example(token=SecretStr(GOOD), operator_tokens=SecretStr(f"alice:{GOOD},bob:{secrets.token_hex(16)}"))
        with pytest.raises(ValidationError, match="name:token"):
            Example(token=SecretStr(GOOD), operator_tokens=SecretStr(GOOD))
        with pytest.raises(ValidationError, match="too weak"):
            Example(token=SecretStr(GOOD), operator_tokens=SecretStr(f"alice:{GOOD},bob:hunter2"))


class TestDeliveryKeys:
    def test_the_first_key_seals_and_any_opens(self) -> None:
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        sealed_before = multi_fernet(SecretStr(old)).encrypt(b"tg_test_key")
        during = multi_fernet(SecretStr(f"{new},{old}"))
        assert during.decrypt(sealed_before) == b"tg_test_key"
        assert multi_fernet(SecretStr(new)).decrypt(during.encrypt(b"k")) == b"k"

    def test_anything_but_fernet_keys_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="Fernet keys"):
            Example(token=SecretStr(GOOD), delivery_keys=SecretStr("not-a-fernet-key"))
