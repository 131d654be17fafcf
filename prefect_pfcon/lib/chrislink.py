"""Staging input dirs with ChRIS ``.chrislink`` resolution, with pfcon's results, safely.

A ChRIS link is a regular file named ``*.chrislink`` whose content is a storage path.
Phase A collects the files of each input dir and, through links, of their targets, from any
fsspec filesystem of storage-relative paths (the local storeBase, a Swift container), and
copies them into ``incoming`` (files under the input dir keep their relative path, files
reached through links land under their full storage path). Phase B then expands the links
inside ``incoming``: each link becomes a folder named after its target (``/`` → ``_``) next
to the link file, and the full-path copies are purged.

Unlike pfcon, nothing here ever leaves the storage: input dirs and link targets are
confined to it (``..`` refused, local symlinks never followed), and phase B stays in ``incoming``.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fsspec.spec import AbstractFileSystem

from prefect_pfcon.lib.filesystems.storebase import place_file
from prefect_pfcon.lib.outputs import CHRISLINK_SUFFIX
from prefect_pfcon.lib.paths import (
    ConfinedDir,
    UnsafePathError,
    is_within,
    normalize_storage_path,
    plain_relative_name,
)
from prefect_pfcon.lib.transfer import download
from prefect_pfcon.lib.trees import copy_tree, remove_tree

logger = logging.getLogger("prefect_pfcon.staging")


class InvalidInputPath(ValueError):
    """A link target that is the storage root, the job's output dir or one of its
    ancestors, or an ancestor of one of its input dirs."""

    def __init__(self, target: str) -> None:
        super().__init__(f"Invalid input path: {target}")


def parse_link(content: bytes) -> str:
    """A link file's target, as a canonical storage path (``.`` for the storage root)."""
    return posixpath.normpath(normalize_storage_path(content.decode("utf-8")))


def _is_ancestor(target: str, path: str) -> bool:
    """Whether the storage path ``target`` is ``path`` or one of its ancestors."""
    return target == "." or (path + "/").startswith(target + "/")


# ----- phase A ------------------------------------------------------------------------------


@dataclass
class _Collection:
    """Files found for the input dirs, as storage paths, in discovery order."""

    fs: AbstractFileSystem
    output_dir: str
    input_dirs: list[str]
    files: dict[str, None] = field(default_factory=dict)
    links: int = 0

    def collect(self, rel: str, visited: list[str]) -> None:
        """Collect ``rel`` (a file or a tree), following links to new targets (each target's
        files right after its link, however long the chain)."""
        pending = [self._found(rel)]
        while pending:
            path = next(pending[-1], None)
            if path is None:
                pending.pop()
                continue
            target = self._take(path, visited)
            if target is not None:
                pending.append(self._found(target))

    def _found(self, rel: str) -> Iterator[str]:
        found = self.fs.find(rel)
        if not found:
            logger.warning("Skipping %s: no such file or directory", rel)
        return iter(found)

    def _take(self, rel: str, visited: list[str]) -> str | None:
        """Record a file; a link's target if it is one not collected yet."""
        self.files[plain_relative_name(rel)] = None
        if not rel.endswith(CHRISLINK_SUFFIX):
            return None
        self.links += 1
        target = parse_link(self.fs.cat_file(rel))
        if _is_ancestor(target, self.output_dir) or any(
            target != input_dir and _is_ancestor(target, input_dir) for input_dir in self.input_dirs
        ):
            raise InvalidInputPath(target)
        if any(target.startswith(seen) for seen in visited):
            return None
        visited.append(target)
        return target


def _incoming_name(rel: str, input_dir: str) -> str:
    """Where a collected file goes in ``incoming``: relative to its input dir if under it
    (an input that is itself a file keeps its name), else under its full storage path."""
    if rel == input_dir:
        return os.path.basename(rel)
    if input_dir and rel.startswith(input_dir + "/"):
        return rel[len(input_dir) + 1 :]
    return rel


# ----- phase B ------------------------------------------------------------------------------


@dataclass
class _Expansion:
    """State of expanding the links inside ``incoming``."""

    incoming: Path
    expanded_sources: list[Path] = field(default_factory=list)
    linked_paths: list[str] = field(default_factory=list)
    links: int = 0

    def expand_tree(self, directory: Path) -> None:
        """Expand every link under ``directory``, depth first in name order, each directory's
        entries snapshotted when it is entered; an expanded link's folder is entered next."""
        pending = [_sorted_entries(directory)]
        while pending:
            entry = next(pending[-1], None)
            if entry is None:
                pending.pop()
            elif entry.is_symlink():
                continue
            elif entry.is_dir():
                pending.append(_sorted_entries(Path(entry.path)))
            elif entry.name.endswith(CHRISLINK_SUFFIX) and os.path.exists(entry.path):
                folder = self._expand_link(Path(entry.path))
                if folder is not None:
                    pending.append(_sorted_entries(folder))

    def _expand_link(self, link: Path) -> Path | None:
        """Replace ``link`` by a copy of its target; the new folder, if one was made."""
        folder = None
        if not any(is_within(source, link) for source in self.expanded_sources):
            target = parse_link(link.read_bytes())
            source = self._inside_incoming(target)
            if source.is_file():
                target, source = os.path.dirname(target), source.parent
            candidate = link.parent / target.replace("/", "_")
            if not candidate.exists() and source.is_dir():
                copy_tree(source, candidate, _link_or_copy)
                self.expanded_sources.append(source)
                folder = candidate
            self.linked_paths.append(target)
        link.unlink()
        self.links += 1
        return folder

    def _inside_incoming(self, target: str) -> Path:
        path = Path(os.path.realpath(self.incoming / target))
        if not is_within(self.incoming, path):
            raise UnsafePathError(f"Link target {target!r} leaves the job's incoming dir")
        return path

    def purge_full_path_copies(self) -> None:
        """Remove the top-level folders of link targets fetched under their full path."""
        for target in self.linked_paths:
            top = target.split("/", 1)[0]
            if top and top not in self.linked_paths:
                remove_tree(self.incoming / top, ignore_errors=True)


def _sorted_entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as scan:
        return iter(sorted(scan, key=lambda entry: entry.name))


def _link_or_copy(source: str, destination: str) -> None:
    place_file(Path(source), Path(destination), hardlink=True)


# ----- public API ---------------------------------------------------------------------------


def expand_links(incoming: Path) -> int:
    """Phase B alone: expand the ``.chrislink`` files in ``incoming``; links processed."""
    expansion = _Expansion(Path(os.path.realpath(incoming)))
    expansion.expand_tree(expansion.incoming)
    expansion.purge_full_path_copies()
    return expansion.links


def stage_inputs(
    fs: AbstractFileSystem, input_dirs: list[str], output_dir: str, incoming: Path, *, workers: int = 1
) -> int:
    """Stage ``input_dirs`` of ``fs`` into ``incoming`` as pfcon's copy does; pfcon's ``nfiles``.

    ``fs`` takes storage-relative paths. Raises ``FileNotFoundError`` for a missing input
    dir, ``InvalidInputPath`` for a link to the storage root, the output dir or an ancestor
    of it, or an ancestor of an input dir, and ``UnsafePathError`` for anything that would
    leave the storage or ``incoming`` (such as an object named with ``..`` or ``//``).
    """
    output = posixpath.normpath(normalize_storage_path(output_dir))
    rels = [normalize_storage_path(input_dir) for input_dir in input_dirs]
    canonical_inputs = [posixpath.normpath(rel) for rel in rels]
    incoming.mkdir(parents=True, exist_ok=True)
    destinations = ConfinedDir(incoming, "the job's incoming dir")
    pairs: dict[str, str] = {}
    links = 0
    for rel in rels:
        if not fs.exists(rel):
            raise FileNotFoundError(f"Input path not found in the storage: {rel}")
        collection = _Collection(fs, output, canonical_inputs)
        collection.collect(rel, [rel])
        links += collection.links
        for file_rel in collection.files:
            pairs.setdefault(file_rel, destinations.destination(_incoming_name(file_rel, rel)))
    download(fs, list(pairs.items()), workers)
    logger.info("%d files fetched from the storage", len(pairs))
    expand_links(incoming)
    return len(pairs) - links
