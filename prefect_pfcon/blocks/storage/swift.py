"""swift storage: inputs downloaded from OpenStack Swift, outputs uploaded back to it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar

from fsspec.implementations.dirfs import DirFileSystem
from pydantic import Field, SecretStr

from prefect_pfcon.blocks.storage.objects import ObjectStorage
from prefect_pfcon.lib.filesystems import SwiftFileSystem, readable_errors


class SwiftStorage(ObjectStorage):
    """pfcon's ``swift`` mode: ChRIS files are objects in one Swift container (created on the
    first upload if missing)."""

    _block_type_name = "pfcon swift storage"
    _block_type_slug = "pfcon-swift-storage"
    _description = "ChRIS files in OpenStack Swift (pfcon STORAGE_ENV=swift)."

    storage_env: ClassVar[str] = "swift"

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

    def _swift(self, **options: float) -> SwiftFileSystem:
        return SwiftFileSystem(
            self.auth_url,
            self.username,
            self.key.get_secret_value(),
            auth_version=self.auth_version,
            os_options=self.os_options,
            **options,
        )

    def objects(self) -> DirFileSystem:
        """The container as an fsspec filesystem of object names."""
        return DirFileSystem(path=self.container_name, fs=self._swift())

    @property
    def object_store(self) -> str:
        return self.auth_url

    def check_reachable(self, timeout: float) -> None:
        """Log in and read the account (the container may not exist before the first upload)."""
        self._swift(retries=0, timeout=timeout).connection.head_account()

    def readable_errors(self) -> AbstractContextManager[None]:
        return readable_errors()

    def prepare_upload(self, objects: DirFileSystem) -> None:
        objects.fs.mkdir(self.container_name)
