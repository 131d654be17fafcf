"""The state dir (``PFCON_STATE_DIR``): private to its owner, with secret files readable by
the owner only."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700
SECRET_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: created 0700, or set to 0700 if it
    exists with other modes. A directory of another user is refused."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path``; on first use ``make()``, stored there mode 0600.

    The file is written and synced under a temporary name created 0600 (``O_CREAT|O_EXCL``)
    and linked into place, so ``path`` is complete or absent: of two starts racing, the
    second finds the first one's file, keeps it and reads it.
    """
    private_dir(path.parent)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, SECRET_MODE)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(make())
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            temporary.unlink()
        _sync_dir(path.parent)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    if stat.S_IMODE(path.stat().st_mode) & ~SECRET_MODE:
        path.chmod(SECRET_MODE)
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty; remove it to have a new secret made")
    return value


def _sync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
