import re

import pytest

from tollgate_keys import keyformat


class TestKeyFormat:
    @pytest.mark.parametrize("env", ["live", "test"])
    def test_says_live_or_test_and_carries_128_random_bits(self, env: str) -> None:
        key = keyformat.generate(env)
        assert re.fullmatch(rf"tg_{env}_[0-9A-Za-z]{{28}}", key)
        assert keyformat.is_well_formed(key)

    def test_keys_do_not_repeat(self) -> None:
        assert len({keyformat.generate("test") for _ in range(1000)}) == 1000

    def test_a_typo_fails_the_checksum(self) -> None:
        key = keyformat.generate("test")
        i = 12
        typo = key[:i] + ("A" if key[i] != "A" else "B") + key[i + 1 :]
        assert not keyformat.is_well_formed(typo)

    @pytest.mark.parametrize("bad", ["", "tg_test_", "sk_test_abc", "tg_prod_" + "a" * 28, "tg_test_" + "!" * 28])
    def test_malformed_strings_are_not_keys(self, bad: str) -> None:
        assert not keyformat.is_well_formed(bad)

    def test_display_shows_prefix_and_last_four_only(self) -> None:
        key = keyformat.generate("live")
        assert keyformat.display(key) == f"tg_live_…{key[-4:]}"

    def test_the_stored_hash_depends_on_the_server_secret(self) -> None:
        key = keyformat.generate("test")
        assert keyformat.hash_key(b"a", key) == keyformat.hash_key(b"a", key)
        assert keyformat.hash_key(b"a", key) != keyformat.hash_key(b"b", key)
        assert key.encode() not in keyformat.hash_key(b"a", key)
