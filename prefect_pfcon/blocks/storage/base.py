"""The storage interface every pfcon storage block implements."""

from __future__ import annotations

import os
import shutil
import time
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, NamedTuple

from fsspec.spec import AbstractFileSystem
from prefect.blocks.core import Block
from pydantic import BaseModel, Field

from prefect_pfcon.lib.filesystems.storebase import StoreBaseFileSystem
from prefect_pfcon.models import CopyJob, PluginJob, UploadJob
from prefect_pfcon.lib.chrislink import stage_inputs
from prefect_pfcon.lib.outputs import count_files, list_output_files
from prefect_pfcon.lib.paths import UnsafePathError, resolve_in_store
from prefect_pfcon.lib.trees import remove_tree


KEY_DIR_PREFIX = "key-"


class UnsafeJobIdError(UnsafePathError):
    """A jid that cannot name a key dir (``/``, ``.``, ``..``, empty)."""


class PluginMounts(NamedTuple):
    """The directories behind ``/share/incoming`` and ``/share/outgoing``, as seen here."""

    incoming: Path
    outgoing: Path


class StorageProbe(BaseModel):
    """What a reachable storage has: the storeBase's space, and the object store it uses."""

    free_bytes: int
    total_bytes: int
    object_store: str | None = None


class StorageBlock(Block, ABC):
    """Where job data lives: the storeBase, its per-job key dirs, staging in and out.

    Subclasses say how inputs reach ``/share/incoming`` and where ``/share/outgoing`` is.
    """

    storage_env: ClassVar[str]
    innetwork: ClassVar[bool] = True
    requires_copy_job: ClassVar[bool] = False
    requires_upload_job: ClassVar[bool] = False
    requires_data_file: ClassVar[bool] = False
    """A plugin POST carries its inputs as a zip (``data_file``)."""
    zips_outputs: ClassVar[bool] = False
    """``GET pluginjobs/<jid>/file/`` without ``job_output_path`` answers a zip of ``outgoing``."""

    store_base: str = Field(
        description="The storeBase as this process sees it (pfcon's STOREBASE_MOUNT)."
    )
    host_store_base: str | None = Field(
        None,
        description="The storeBase as the container engine sees it (pfcon's STOREBASE); "
        "defaults to store_base.",
    )
    transfer_workers: int = Field(
        10, ge=1, le=64, description="Files transferred in parallel when staging in or out."
    )

    @property
    def root(self) -> Path:
        """The storeBase directory (symlinks resolved)."""
        return Path(os.path.realpath(self.store_base))

    def server_info(self) -> dict[str, Any]:
        """The storage part of pfcon's server-info answer."""
        return {
            "pfcon_innetwork": self.innetwork,
            "storage_env": self.storage_env,
            "requires_copy_job": self.innetwork and self.requires_copy_job,
            "requires_upload_job": self.innetwork and self.requires_upload_job,
        }

    def probe(self, timeout: float) -> StorageProbe:
        """The storeBase's free and total space; raises when it cannot be read."""
        usage = shutil.disk_usage(self.root)
        return StorageProbe(free_bytes=usage.free, total_bytes=usage.total)

    def resolve(self, rel: str) -> Path:
        """A client-given storage path, confined to the storeBase."""
        return resolve_in_store(self.root, rel)

    def check_job_path(self, rel: str) -> None:
        """Refuse a path a job may not name as its input or output: one leaving the storeBase,
        the whole storeBase (every user's files and every job's key dir), or inside a key dir
        (another job's scratch area)."""
        real = self.resolve(rel)
        if real == self.root:
            raise UnsafePathError(f"Path {rel!r} is the whole storeBase")
        if real.relative_to(self.root).parts[0].startswith(KEY_DIR_PREFIX):
            raise UnsafePathError(f"Path {rel!r} is inside a job's key dir")

    def key_dir(self, jid: str) -> Path:
        """``<storeBase>/key-<jid>``, the job's scratch area."""
        if not jid or "/" in jid or jid in (".", ".."):
            raise UnsafeJobIdError(f"Invalid job id: {jid!r}")
        return self.root / f"{KEY_DIR_PREFIX}{jid}"

    def incoming(self, jid: str) -> Path:
        """``key-<jid>/incoming``: the staged inputs."""
        return self.key_dir(jid) / "incoming"

    def outgoing(self, jid: str) -> Path:
        """``key-<jid>/outgoing``: outputs of modes that do not write in place."""
        return self.key_dir(jid) / "outgoing"

    def key_dir_mounts(self, jid: str) -> PluginMounts:
        """``incoming`` and ``outgoing`` of the key dir, ``outgoing`` created world-writable
        (the plugin may run as any ``CONTAINER_USER``)."""
        outgoing = self.outgoing(jid)
        outgoing.mkdir(parents=True, exist_ok=True)
        outgoing.chmod(0o777)
        return PluginMounts(self.incoming(jid), outgoing)

    def to_host_path(self, path: Path) -> Path:
        """Translate a path under the storeBase to the container engine's view."""
        if not self.host_store_base:
            return path
        return Path(self.host_store_base) / path.relative_to(self.root)

    def plugin_post_error(self, job: PluginJob) -> str | None:
        """pfcon's mode check of a plugin POST, or ``None`` when it passes."""
        if self.innetwork and not job.output_dir:
            return "output_dir: field is required"
        return None

    def plugin_data(self, job: PluginJob, data_file: BinaryIO | None) -> dict[str, Any]:
        """Synchronous part of a plugin POST; the ``data`` object of its answer."""
        return {}

    @abstractmethod
    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        """The directories mounted at ``/share/incoming`` and ``/share/outgoing``."""

    def staged_data(self, jid: str) -> dict[str, Any]:
        """The ``data`` object for the inputs a copy step staged in ``key-<jid>/incoming``."""
        incoming = self.incoming(jid)
        return data_object(jid, count_files(incoming) if incoming.is_dir() else 0, incoming)

    def prepare_copy(self, job: CopyJob) -> None:
        """Synchronous part of a copy POST: create the key dir, as pfcon does."""
        self.key_dir(job.jid).mkdir(parents=True, exist_ok=True)

    def filesystem(self) -> AbstractFileSystem:
        """The storage (where inputs are read and outputs end) as an fsspec filesystem of
        storage paths; the copy step reads it."""
        return StoreBaseFileSystem(self.root)

    def stage_in(self, job: CopyJob) -> int:
        """Fill a fresh ``key-<jid>/incoming`` from the input dirs (links resolved); pfcon's
        nfiles. A copy that runs again (a retry) starts from an empty dir."""
        remove_tree(self.incoming(job.jid), ignore_errors=True)
        return stage_inputs(
            self.filesystem(),
            job.input_dirs,
            job.output_dir,
            self.incoming(job.jid),
            workers=self.transfer_workers,
        )

    def stage_out(self, job: UploadJob) -> int:
        """Push the job's outputs to their final storage; returns the file count."""
        raise NotImplementedError

    def list_outputs(self, jid: str, job_output_path: str, plugin_output_dir: str | None = None) -> list[str] | None:
        """Relative paths of the job's output files, or ``None`` if there is no such dir;
        ``plugin_output_dir``: where the jid's plugin job wrote, if it has one."""

    def output_files(self, job: PluginJob) -> list[str]:
        """The plugin's output files (links omitted, nothing deleted), relative to its output."""
        outgoing = self.plugin_mounts(job).outgoing
        return list_output_files(outgoing, skip_chrislinks=True) if outgoing.is_dir() else []

    def outgoing_files(self, jid: str) -> list[str] | None:
        """Files in ``key-<jid>/outgoing`` (links omitted), or ``None`` without a key dir."""
        if not self.key_dir(jid).is_dir():
            return None
        outgoing = self.outgoing(jid)
        return list_output_files(outgoing, skip_chrislinks=True) if outgoing.is_dir() else []

    def key_dir_jids(self, older_than_seconds: float) -> list[str]:
        """jids of the key dirs under the storeBase not modified for ``older_than_seconds``."""
        cutoff = time.time() - older_than_seconds
        return [
            entry.name.removeprefix(KEY_DIR_PREFIX)
            for entry in os.scandir(self.root)
            if entry.name.startswith(KEY_DIR_PREFIX) and entry.is_dir(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < cutoff
        ]

    def has_job_data(self, jid: str) -> bool:
        """Whether the job's key dir exists (a delete job has something to do)."""
        return self.key_dir(jid).is_dir()

    def remove_job_data(self, jid: str) -> None:
        """Remove the job's key dir; never anything outside it."""
        key_dir = self.key_dir(jid)
        if key_dir.is_symlink():
            key_dir.unlink()
        elif key_dir.exists():
            remove_tree(key_dir)


def local_timestamp() -> str:
    """pfcon's ``data.timestamp`` format: local time ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return str(datetime.now())


def data_object(jid: str, nfiles: int, path: Path) -> dict[str, Any]:
    """The ``data`` object of a plugin POST that staged ``nfiles`` inputs in ``path``."""
    return {"jid": jid, "nfiles": nfiles, "timestamp": local_timestamp(), "path": str(path)}
