"""The storeBase as an fsspec filesystem of storage-relative paths, confined to it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from prefect_pfcon.tasks.paths import resolve_in_store


def place_file(source: Path, destination: Path, hardlink: bool) -> None:
    """Hard-link (if asked and possible) or copy ``source`` to ``destination``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
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

    def __init__(self, root: str | Path, hardlink: bool = False) -> None:
        super().__init__(path=os.path.realpath(root), fs=LocalFileSystem())
        self.hardlink = hardlink

    def _join(self, path: Any) -> Any:
        if isinstance(path, str):
            resolve_in_store(Path(self.path), path)
            return super()._join(path.strip("/"))
        return super()._join(path)

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        """Regular files under ``path`` (or ``path`` itself), symlinks neither followed nor listed."""
        top = Path(self._join(path))
        if top.is_file():
            found = [top]
        else:
            found = [
                Path(dirpath, name)
                for dirpath, _dirnames, filenames in os.walk(top)
                for name in filenames
                if not os.path.islink(os.path.join(dirpath, name))
            ]
        names = [path_.relative_to(self.path).as_posix() for path_ in found]
        if detail:
            return {name: self.info(name) for name in names}
        return names

    def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        place_file(Path(self._join(rpath)), Path(lpath), self.hardlink)
