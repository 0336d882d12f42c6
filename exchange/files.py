"""Files only their owner may read (passwords, keys, settings that hold them)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: Random bytes in a secret made by :func:`make_secret`.
SECRET_BYTES = 32
#: Shorter secrets are refused when read.
MIN_SECRET_BYTES = 16


def write_private(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``path`` with mode 0600 from its creation on (never briefly readable by others).

    ``replace=False`` refuses (``FileExistsError``) to overwrite an existing file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if replace:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_secret(path: Path) -> bool:
    """A new random secret in ``path`` (hex, mode 0600) unless there is one; whether it was made
    (``False`` too when another process on this host made it at the same moment)."""
    if path.exists():
        return False
    try:
        write_private(path, (secrets.token_hex(SECRET_BYTES) + "\n").encode(), replace=False)
    except FileExistsError:
        return False
    return True


def read_hex_secret(path: Path) -> bytes:
    """A secret written by :func:`make_secret`. Raises ``OSError`` (``FileNotFoundError``) or
    ``UnicodeDecodeError`` when it cannot be read, ``ValueError`` (saying what) when it is not
    hex or is shorter than :data:`MIN_SECRET_BYTES`."""
    text = path.read_text(encoding="ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError("not hex") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"shorter than {MIN_SECRET_BYTES} bytes")
    return secret
