"""A thin fsspec filesystem over python-swiftclient (OpenStack Swift object storage).

Paths are ``<container>/<object name>``; "directories" are name prefixes ending in ``/``.
Each thread gets its own ``swiftclient`` connection, so transfers can run in parallel.
Reads and writes are streamed: memory stays bounded whatever the object size.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from swiftclient.client import ClientException, Connection

CHUNK_BYTES = 1024 * 1024


def split_path(path: str) -> tuple[str, str]:
    """``container/some/object`` → ``("container", "some/object")``."""
    container, _, name = path.strip("/").partition("/")
    return container, name


def _not_found(error: ClientException) -> bool:
    return error.http_status == 404


@contextmanager
def _missing_as(path: str) -> Iterator[None]:
    """Turn Swift's 404 into ``FileNotFoundError(path)``, as fsspec callers expect."""
    try:
        yield
    except ClientException as error:
        if _not_found(error):
            raise FileNotFoundError(path) from error
        raise


def _parent_dirs(names: Iterator[str] | dict[str, Any], top: str) -> set[str]:
    """The pseudo-directories between ``top`` and each object name."""
    directories = set()
    for name in names:
        parent = name.rsplit("/", 1)[0]
        while parent.startswith(top + "/"):
            directories.add(parent)
            parent = parent.rsplit("/", 1)[0]
    return directories


class SwiftError(RuntimeError):
    """A Swift failure, told in one readable line (never with credentials)."""


@contextmanager
def readable_errors() -> Iterator[None]:
    """Re-raise swiftclient's exceptions as ``SwiftError("Swift: <what> (<status>)")``."""
    try:
        yield
    except ClientException as error:
        status = f" ({error.http_status} {error.http_reason})" if error.http_status else ""
        raise SwiftError(f"Swift: {error.msg}{status}") from None


class SwiftFileSystem(AbstractFileSystem):
    """Swift containers and objects as an fsspec filesystem."""

    protocol = "pfcon-swift"
    cachable = False

    def __init__(
        self,
        auth_url: str,
        user: str,
        key: str,
        *,
        auth_version: str = "1",
        os_options: dict[str, str] | None = None,
        retries: int = 3,
        timeout: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._connection_options = {
            "authurl": auth_url,
            "user": user,
            "key": key,
            "auth_version": auth_version,
            "os_options": os_options or {},
            "retries": retries,
            "timeout": timeout,
        }
        self._local = threading.local()

    @property
    def connection(self) -> Connection:
        """This thread's connection (swiftclient connections are not thread-safe)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = Connection(**self._connection_options)
        return connection

    # ----- listing ---------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        container, prefix = split_path(path)
        if not container:
            _, containers = self.connection.get_account(full_listing=True)
            entries = [{"name": c["name"], "type": "directory", "size": 0} for c in containers]
        else:
            entries = list(self._listing(container, prefix, delimiter="/"))
            if not entries and prefix:
                entries = [self.info(path)]
        return entries if detail else [entry["name"] for entry in entries]

    def _listing(self, container: str, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        """Entries under ``prefix/``; subdirectories only with a delimiter."""
        prefix = f"{prefix.rstrip('/')}/" if prefix else ""
        with _missing_as(container):
            _, objects = self.connection.get_container(
                container, prefix=prefix, delimiter=delimiter, full_listing=True
            )
        for entry in objects:
            if "subdir" in entry:
                yield {"name": f"{container}/{entry['subdir'].rstrip('/')}", "type": "directory", "size": 0}
            elif not entry["name"].endswith("/"):
                yield {"name": f"{container}/{entry['name']}", "type": "file", "size": entry["bytes"]}

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        """Every object under ``path`` (or ``path`` itself if it is an object), in one listing."""
        container, prefix = split_path(path)
        try:
            entry = self.info(path)
            if entry["type"] == "file":
                found = {entry["name"]: entry}
            else:
                found = {item["name"]: item for item in self._listing(container, prefix, None)}
        except FileNotFoundError:
            found = {}
        if withdirs:
            found.update({directory: {"name": directory, "type": "directory", "size": 0}
                          for directory in _parent_dirs(found, path.strip("/"))})
        return found if detail else sorted(found)

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether ``path`` exists; errors other than "not found" (auth, network) propagate."""
        try:
            self.info(path)
        except FileNotFoundError:
            return False
        return True

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        container, name = split_path(path)
        with _missing_as(path):
            if not name:
                headers = self.connection.head_container(container)
                return {"name": container, "type": "directory", "size": int(headers.get("x-container-bytes-used", 0))}
            try:
                headers = self.connection.head_object(container, name)
                return {"name": path.strip("/"), "type": "file", "size": int(headers["content-length"])}
            except ClientException as error:
                if not _not_found(error):
                    raise
            _, objects = self.connection.get_container(container, prefix=f"{name.rstrip('/')}/", limit=1)
        if objects:
            return {"name": path.strip("/"), "type": "directory", "size": 0}
        raise FileNotFoundError(path)

    # ----- reading and writing -----------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        container, name = split_path(path)
        headers = {"Range": f"bytes={start or 0}-{'' if end is None else end - 1}"} if start or end else None
        with _missing_as(path):
            _, body = self.connection.get_object(container, name, headers=headers)
        return body

    def get_file(self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None, **kwargs: Any) -> None:
        """Download one object to a local file, streamed in 1 MiB chunks."""
        container, name = split_path(rpath)
        with _missing_as(rpath):
            _, chunks = self.connection.get_object(container, name, resp_chunk_size=CHUNK_BYTES)
        with open(lpath, "wb") as target:
            for chunk in chunks:
                target.write(chunk)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        """Upload one local file as an object, streamed."""
        container, name = split_path(rpath)
        with open(lpath, "rb") as source:
            size = source.seek(0, 2)
            source.seek(0)
            self.connection.put_object(container, name, source, content_length=size, chunk_size=CHUNK_BYTES)

    def rm_file(self, path: str) -> None:
        container, name = split_path(path)
        with _missing_as(path):
            self.connection.delete_object(container, name)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Create the container of ``path`` (prefixes need no creation)."""
        container, _ = split_path(path)
        self.connection.put_container(container)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs: Any) -> SwiftFile:
        return SwiftFile(self, path, mode=mode, block_size=block_size or CHUNK_BYTES, **kwargs)


class SwiftFile(AbstractBufferedFile):
    """A Swift object opened for reading (ranged GETs) or writing (spooled, one PUT on close)."""

    fs: SwiftFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    def _initiate_upload(self) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK_BYTES)

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._spool)
        if final:
            size = self._spool.tell()
            self._spool.seek(0)
            container, name = split_path(self.path)
            self.fs.connection.put_object(container, name, self._spool, content_length=size, chunk_size=CHUNK_BYTES)
            self._spool.close()
        return True
