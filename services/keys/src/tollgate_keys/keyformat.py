"""API key format: `tg_live_` or `tg_test_`, 128 random bits, a CRC32 checksum.

The checksum lets validation refuse a mistyped key without touching the database;
it is not a secret and adds no security. Keys are stored only as HMAC-SHA256 under
a server secret, so a leaked table does not yield usable keys.
"""

import hmac
import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 22  # 62**22 > 2**128
CHECKSUM_CHARS = 6  # 62**6 > 2**32
KEY_RE = re.compile(rf"^tg_(live|test)_([0-9A-Za-z]{{{RANDOM_CHARS}}})([0-9A-Za-z]{{{CHECKSUM_CHARS}}})$")


def _base62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, r = divmod(n, 62)
        chars.append(ALPHABET[r])
    return "".join(reversed(chars))


def _checksum(prefix_and_random: str) -> str:
    return _base62(zlib.crc32(prefix_and_random.encode()), CHECKSUM_CHARS)


def generate(environment: str) -> str:
    if environment not in ("live", "test"):
        raise ValueError("environment is 'live' or 'test'")
    body = f"tg_{environment}_{_base62(secrets.randbits(128), RANDOM_CHARS)}"
    return body + _checksum(body)


def is_well_formed(key: str) -> bool:
    """Shape and checksum both right: worth a database lookup."""
    match = KEY_RE.match(key)
    if not match:
        return False
    body = key[:-CHECKSUM_CHARS]
    return hmac.compare_digest(_checksum(body), match.group(3))


def display(key: str) -> str:
    """What may be shown again later: the prefix and the last four characters."""
    return f"{key[:8]}…{key[-4:]}"


def hash_key(secret: bytes, key: str) -> bytes:
    return hmac.digest(secret, key.encode(), "sha256")


def secret_id(secret: bytes) -> str:
    """A hash secret's fingerprint, kept beside each key's hash: which secret it is under."""
    return hmac.digest(secret, b"tollgate key hash secret id", "sha256").hex()[:16]
