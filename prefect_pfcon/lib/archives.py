"""Zip archives in and out of a job: safe unpacking of a client's zip, streamed output zips."""

from __future__ import annotations

import errno
import io
import shutil
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from prefect_pfcon.lib.outputs import CHRISLINK_SUFFIX
from prefect_pfcon.lib.trees import make_dirs

CHUNK_BYTES = 1024 * 1024


class BadArchive(ValueError):
    """A zip that is not one, or that would write outside its target or too much."""


def _safe_name(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's relative path; refuses absolute names, ``..``, backslashes, links."""
    name = info.filename
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or "\\" in name
        or ".." in path.parts
        or (path.parts and ":" in path.parts[0])
    ):
        raise BadArchive(f"unsafe entry name {name!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadArchive(f"entry {name!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise BadArchive(f"entry {name!r} is encrypted")
    return path


def unpack_zip(source: BinaryIO, destination: Path, max_bytes: int) -> int:
    """Check every entry of the zip ``source``, then unpack it into ``destination``.

    Nothing is written unless the whole archive passes: names must stay inside
    ``destination``, links and encrypted entries are refused, and the declared size
    (which unpacking enforces, CRC-checked) must not exceed ``max_bytes``. Returns the
    number of regular files minus ``.chrislink`` files (pfcon's ``nfiles``).
    """
    try:
        with zipfile.ZipFile(source) as archive:
            entries = [(info, _safe_name(info)) for info in archive.infolist()]
            declared = sum(info.file_size for info, _ in entries)
            if declared > max_bytes:
                raise BadArchive(f"unpacks to {declared} bytes, more than the {max_bytes} allowed")
            files = 0
            for info, name in entries:
                target = destination.joinpath(*name.parts)
                try:
                    if info.is_dir():
                        make_dirs(target)
                        continue
                    make_dirs(target.parent)
                    with archive.open(info) as member, target.open("wb") as out:
                        shutil.copyfileobj(member, out, CHUNK_BYTES)
                except (IsADirectoryError, NotADirectoryError, FileExistsError) as error:
                    raise BadArchive(f"entry {info.filename!r} clashes with another entry") from error
                except OSError as error:
                    if error.errno != errno.ENAMETOOLONG:
                        raise
                    raise BadArchive(f"entry {info.filename!r}: name too long") from error
                files += not name.name.endswith(CHRISLINK_SUFFIX)
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise BadArchive("Bad zip file") from error


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are taken out as they come."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def iter_zip(root: Path, names: Iterable[str]) -> Iterator[bytes]:
    """A deflated zip of ``root/<name>`` for each name, produced chunk by chunk."""
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            path = root / name
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
                    yield sink.drain()
            yield sink.drain()
    yield sink.drain()
