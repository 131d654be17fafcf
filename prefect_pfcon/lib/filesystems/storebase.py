"""The storeBase as an fsspec filesystem of storage-relative paths, confined to it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from prefect_pfcon.lib.paths import ConfinedDir, UnsafePathError, normalize_storage_path
from prefect_pfcon.lib.trees import walk


class SpecialFileError(UnsafePathError):
    """A file to stage that is not a regular file (a FIFO, socket, device or symlink)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path} is not a regular file (FIFO, socket, device or symlink)")


def is_regular_file(path: str | Path) -> bool:
    """Whether ``path`` itself (not a symlink's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def place_file(source: str | Path, destination: str | Path, hardlink: bool) -> None:
    """Hard-link (if asked and possible) or copy the regular file ``source`` to
    ``destination`` (whose directory exists); anything else raises ``SpecialFileError``.

    Neither a link nor a copy follows a symlink (at either end); a copy never opens a device
    or a FIFO, and reads no more than the size the regular file had when opened.
    """
    if hardlink:
        try:
            os.link(source, destination, follow_symlinks=False)
        except OSError:
            pass
        else:
            if is_regular_file(destination):
                return
            os.unlink(destination)
            raise SpecialFileError(source)
    if not is_regular_file(source):
        raise SpecialFileError(source)
    descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(descriptor, "rb") as original:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise SpecialFileError(source)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        with open(os.open(destination, flags, 0o600), "wb") as copy:
            offset = 0
            while offset < info.st_size:
                sent = os.sendfile(copy.fileno(), original.fileno(), offset, info.st_size - offset)
                if not sent:
                    break
                offset += sent
            os.fchmod(copy.fileno(), stat.S_IMODE(info.st_mode))
            os.utime(copy.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))


class StoreBaseFileSystem(DirFileSystem):
    """Local storage seen from its root: no path (or symlink) may lead outside it.

    ``find`` never follows symlinks and lists regular files only (no symlinks, FIFOs,
    sockets or devices), like ChRIS's own walks;
    ``get_file`` hard-links instead of copying when ``hardlink`` is set and possible.
    """

    cachable = False
    local_file = True

    def __init__(self, root: str | Path, hardlink: bool = False) -> None:
        super().__init__(path=os.path.realpath(root), fs=LocalFileSystem())
        self.hardlink = hardlink
        self._confinement = ConfinedDir(self.path, "the storeBase")

    def _join(self, path: Any) -> Any:
        if isinstance(path, str):
            return self._confined(path)
        return super()._join(path)

    def _confined(self, rel: str) -> str:
        """``root/rel``, refused if it (through any symlink) resolves outside the root."""
        return self._confinement.join(normalize_storage_path(rel))

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        """Regular files under ``path`` (or ``path`` itself), and their directories if
        ``withdirs``; symlinks are neither followed nor listed, nor are special files."""
        top = self._join(path)
        found: list[str] = []
        if os.path.isfile(top):
            found.append(top)
        for dirpath, dirnames, filenames in walk(top):
            if withdirs:
                found.extend(os.path.join(dirpath, name) for name in dirnames)
            found.extend(
                file_path
                for file_path in (os.path.join(dirpath, name) for name in filenames)
                if is_regular_file(file_path)
            )
        names = sorted(found_path[len(self.path) + 1 :] for found_path in found)
        if detail:
            return {name: self.info(name) for name in names}
        return names

    def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        place_file(self._join(rpath), lpath, self.hardlink)
