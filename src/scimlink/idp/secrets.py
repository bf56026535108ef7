"""Secrets the directory must use later (IdM tokens) are encrypted at rest with a master key.

The master key comes from ``SCIMLINK_IDP_MASTER_KEY`` (a Fernet key) or, failing that, from a
key file in the data directory that is created once with mode 0600. Fernet (AES-128-CBC with
HMAC-SHA256) authenticates what it decrypts, so a tampered value fails instead of decrypting
to garbage.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken

from scimlink.errors import InvalidInputError


class SecretBox:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise InvalidInputError(
                "The directory's master key is not a Fernet key (32 url-safe base64 bytes)."
            ) from None

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The key in ``path``, created (mode 0600) on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise InvalidInputError(
                "A stored secret cannot be decrypted with this master key; configure the "
                "token again (scimlink idp app idm configure)."
            ) from None


def hint(secret: str) -> str:
    """What an administrator may see of a token: its last four characters."""
    return f"…{secret[-4:]}" if len(secret) > 8 else "…"
