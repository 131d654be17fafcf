"""The storeBase as an fsspec filesystem of storage-relative paths, confined to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from prefect_pfcon.tasks.paths import UnsafePathError, normalize_storage_path
from prefect_pfcon.tasks.trees import walk


def place_file(source: str | Path, destination: str | Path, hardlink: bool) -> None:
    """Hard-link (if asked and possible) or copy ``source`` to ``destination`` (whose
    directory exists)."""
    if hardlink:
        try:
            os.link(source, destination)
            return
        except OSError:
            pass
    shutil.copy2(source, destination)


class StoreBaseFileSystem(DirFileSystem):
    """Local storage seen from its root: no path (or symlink) may lead outside it.

    ``find`` never follows symlinks and skips symlinked files, like ChRIS's own walks;
    ``get_file`` hard-links instead of copying when ``hardlink`` is set and possible.
    """

    cachable = False
    local_file = True

    def __init__(self, root: str | Path, hardlink: bool = False) -> None:
        super().__init__(path=os.path.realpath(root), fs=LocalFileSystem())
        self.hardlink = hardlink
        self._real_dirs: dict[str, str] = {}

    def _join(self, path: Any) -> Any:
        if isinstance(path, str):
            return self._confined(path)
        return super()._join(path)

    def _confined(self, rel: str) -> str:
        """``root/rel``, refused if it (through any symlink) resolves outside the root.

        Real paths of parent directories are remembered, so checking the many files of
        one directory costs one ``lstat`` each.
        """
        rel = normalize_storage_path(rel)
        if not rel:
            return self.path
        path = os.path.join(self.path, rel)
        parent = os.path.dirname(path)
        real_parent = self._real_dirs.get(parent)
        if real_parent is None:
            real_parent = self._real_dirs[parent] = os.path.realpath(parent)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(real_parent, os.path.basename(path))
        if not (real == self.path or real.startswith(self.path + os.sep)):
            raise UnsafePathError(f"Path {rel!r} resolves outside the storeBase")
        return path

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        """Regular files under ``path`` (or ``path`` itself), and their directories if
        ``withdirs``; symlinks are neither followed nor listed."""
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
                if not os.path.islink(file_path)
            )
        names = sorted(found_path[len(self.path) + 1 :] for found_path in found)
        if detail:
            return {name: self.info(name) for name in names}
        return names

    def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        place_file(self._join(rpath), lpath, self.hardlink)
