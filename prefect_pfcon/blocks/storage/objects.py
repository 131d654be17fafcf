"""What the object-storage modes (swift, s3) share: stage in from objects, out to objects."""

from __future__ import annotations

import posixpath
from abc import ABC
from contextlib import AbstractContextManager
from typing import ClassVar

from fsspec.spec import AbstractFileSystem

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock, StorageProbe
from prefect_pfcon.models import CopyJob, PluginJob, UploadJob
from prefect_pfcon.lib.outputs import list_output_files
from prefect_pfcon.lib.paths import normalize_storage_path
from prefect_pfcon.lib.transfer import upload


class ObjectStorage(StorageBlock, ABC):
    """ChRIS files are objects in one container or bucket, named by their storage paths.

    The copy step downloads the input prefixes (links resolved) into ``key-<jid>/incoming``;
    the plugin writes ``key-<jid>/outgoing``; the upload step puts those files under
    ``job_output_path``, skipping objects already there with the same size. Failures of the
    object store surface as one readable line.
    """

    requires_copy_job: ClassVar[bool] = True
    requires_upload_job: ClassVar[bool] = True
    zips_outputs: ClassVar[bool] = True

    def objects(self) -> AbstractFileSystem:
        """The container or bucket as an fsspec filesystem of object names."""
        raise NotImplementedError

    def filesystem(self) -> AbstractFileSystem:
        return self.objects()

    def readable_errors(self) -> AbstractContextManager[None]:
        """A context that re-raises the object store's failures as one readable line."""
        raise NotImplementedError

    @property
    def object_store(self) -> str:
        """The object store's URL (never its credentials)."""
        raise NotImplementedError

    def check_reachable(self, timeout: float) -> None:
        """One request to the object store with the short ``timeout``; raises when it fails."""
        raise NotImplementedError

    def probe(self, timeout: float) -> StorageProbe:
        """The storeBase's space, once the object store answered."""
        with self.readable_errors():
            self.check_reachable(timeout)
        return super().probe(timeout).model_copy(update={"object_store": self.object_store})

    def prepare_upload(self, objects: AbstractFileSystem) -> None:
        """Make sure the container or bucket can take the outputs, before listing it."""

    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        return self.key_dir_mounts(job.jid)

    def stage_in(self, job: CopyJob) -> int:
        with self.readable_errors():
            return super().stage_in(job)

    def stage_out(self, job: UploadJob) -> int:
        """Upload ``outgoing`` under ``job_output_path``; returns the number of files uploaded."""
        with self.readable_errors():
            return self._upload_outputs(job)

    def _upload_outputs(self, job: UploadJob) -> int:
        prefix = normalize_storage_path(job.job_output_path)
        outgoing = self.outgoing(job.jid)
        objects = self.objects()
        self.prepare_upload(objects)
        present = {name: entry["size"] for name, entry in objects.find(prefix, detail=True).items()}
        pairs = [
            (str(outgoing / rel), posixpath.join(prefix, rel))
            for rel in list_output_files(outgoing, skip_chrislinks=True)
            if present.get(posixpath.join(prefix, rel)) != (outgoing / rel).stat().st_size
        ]
        return upload(objects, pairs, self.transfer_workers)

    def list_outputs(self, jid: str, job_output_path: str, plugin_output_dir: str | None = None) -> list[str] | None:
        outgoing = self.outgoing(jid)
        outgoing.mkdir(parents=True, exist_ok=True)
        return list_output_files(outgoing, skip_chrislinks=True)
