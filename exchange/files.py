"""Files only their owner may read (passwords, keys, settings that hold them)."""

from __future__ import annotations

import os
from pathlib import Path


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
