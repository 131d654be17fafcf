"""swift storage: inputs downloaded from OpenStack Swift, outputs uploaded back to it."""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

from fsspec.implementations.dirfs import DirFileSystem
from pydantic import Field, SecretStr

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock
from prefect_pfcon.filesystems import SwiftFileSystem, readable_errors
from prefect_pfcon.models import CopyJob, PluginJob, UploadJob
from prefect_pfcon.tasks.outputs import list_output_files
from prefect_pfcon.tasks.paths import normalize_storage_path
from prefect_pfcon.tasks.transfer import upload


class SwiftStorage(StorageBlock):
    """pfcon's ``swift`` mode: ChRIS files are objects in one Swift container.

    The copy step downloads the input prefixes (links resolved) into ``key-<jid>/incoming``;
    the plugin writes ``key-<jid>/outgoing``; the upload step puts those files under
    ``job_output_path``, skipping objects already there with the same size.
    """

    _block_type_name = "pfcon swift storage"
    _block_type_slug = "pfcon-swift-storage"
    _description = "ChRIS files in OpenStack Swift (pfcon STORAGE_ENV=swift)."

    storage_env: ClassVar[str] = "swift"
    requires_copy_job: ClassVar[bool] = True
    requires_upload_job: ClassVar[bool] = True
    zips_outputs: ClassVar[bool] = True

    auth_url: str = Field(description="Swift auth URL (SWIFT_AUTH_URL), e.g. http://127.0.0.1:8080/auth/v1.0.")
    username: str = Field(description="Swift user (SWIFT_USERNAME); tempauth users are account:user.")
    key: SecretStr = Field(description="Swift key or password (SWIFT_KEY).")
    container_name: str = Field("users", description="Container holding ChRIS files (SWIFT_CONTAINER_NAME).")
    auth_version: str = Field("1", description="Swift auth version: 1 (tempauth), 2 or 3 (Keystone).")
    os_options: dict[str, str] = Field(
        default_factory=dict, description="Keystone options (project_name, user_domain_name, ...)."
    )

    def server_info(self) -> dict[str, Any]:
        return {**super().server_info(), "swift_auth_url": self.auth_url}

    def objects(self) -> DirFileSystem:
        """The container as an fsspec filesystem of object names."""
        swift = SwiftFileSystem(
            self.auth_url,
            self.username,
            self.key.get_secret_value(),
            auth_version=self.auth_version,
            os_options=self.os_options,
        )
        return DirFileSystem(path=self.container_name, fs=swift)

    filesystem = objects

    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        return self.key_dir_mounts(job.jid)

    def stage_in(self, job: CopyJob) -> int:
        with readable_errors():
            return super().stage_in(job)

    def stage_out(self, job: UploadJob) -> int:
        """Upload ``outgoing`` under ``job_output_path``; returns the number of files uploaded."""
        with readable_errors():
            return self._upload_outputs(job)

    def _upload_outputs(self, job: UploadJob) -> int:
        prefix = normalize_storage_path(job.job_output_path)
        outgoing = self.outgoing(job.jid)
        objects = self.objects()
        objects.fs.mkdir(self.container_name)
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
