"""Encryption at rest of integration secrets (webhook signing secrets and URLs, ticketing
credentials), with keys from the environment.

`INTEGRATION_KEY` holds one or more Fernet keys, comma-separated, newest first: the first
encrypts, every one decrypts (`cryptography`'s MultiFernet), so a key is rotated by putting the
new one in front, running `python -m app.cli rotate-integration-key`, then dropping the old
one. Outside dev and test the key is required (`Settings.validate`); dev and test derive one
fixed development key, so a dev database is never readable with a production key or the other
way round.

Columns typed :class:`EncryptedText` hold the Fernet token (`gAAAAA...`); the ORM encrypts on
write and decrypts on read, so domain code sees plain strings and the database never does.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

KEY_SETTING = "INTEGRATION_KEY"
# Every Fernet token starts with version byte 0x80, base64url "gA".
TOKEN_PREFIX = "gAAAAA"
_DEV_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"resolutionflow development integration key (dev and test only)").digest()
).decode("ascii")


class SecretKeyError(RuntimeError):
    """INTEGRATION_KEY is missing or malformed, or a stored secret does not decrypt with it."""


def dev_key() -> str:
    return _DEV_KEY


def parse_keys(raw: str | None) -> tuple[str, ...]:
    """``"k1,k2"`` -> ``("k1", "k2")``, each checked to be a Fernet key (32 url-safe base64
    bytes). Raises :class:`SecretKeyError` naming the setting."""
    keys = tuple(part.strip() for part in (raw or "").split(",") if part.strip())
    if not keys:
        raise SecretKeyError(f"{KEY_SETTING} is empty")
    for index, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                f"{KEY_SETTING} key #{index} is not a Fernet key (32 url-safe base64 bytes; "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc
    return keys


class SecretBox:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError(f"{KEY_SETTING} is empty")
        self.keys = tuple(keys)
        self._fernet = MultiFernet([Fernet(key) for key in self.keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError(
                f"a stored secret does not decrypt with {KEY_SETTING} (wrong or rotated-out key)"
            ) from exc

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the first key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise SecretKeyError(f"a stored secret does not decrypt with {KEY_SETTING}") from exc


def keys_from_env(env: Mapping[str, str], *, is_dev: bool) -> tuple[str, ...]:
    """The configured keys; dev and test fall back to the development key, anything else
    without INTEGRATION_KEY raises."""
    raw = env.get(KEY_SETTING)
    if raw is None or not raw.strip():
        if is_dev:
            return (_DEV_KEY,)
        raise SecretKeyError(
            f"{KEY_SETTING} must be set outside dev and test: it encrypts integration secrets"
        )
    return parse_keys(raw)


_lock = threading.Lock()
_box: SecretBox | None = None


def configure(keys: Sequence[str]) -> SecretBox:
    """Install the process's keys (called by `shared.runtime.configure` and each app factory)."""
    global _box
    box = SecretBox(keys)
    with _lock:
        _box = box
    return box


def box() -> SecretBox:
    """The process's keys, read from the environment on first use if nobody configured them."""
    global _box
    current = _box
    if current is not None:
        return current
    from shared.config import Settings

    return configure(Settings.from_env().integration_keys)


def encrypt(plaintext: str) -> str:
    return box().encrypt(plaintext)


def decrypt(token: str) -> str:
    return box().decrypt(token)


def is_encrypted(value: str | None) -> bool:
    return bool(value) and str(value).startswith(TOKEN_PREFIX)


class EncryptedText(TypeDecorator[str]):
    """A text column holding a Fernet token; Python sees the plaintext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return decrypt(str(value))
