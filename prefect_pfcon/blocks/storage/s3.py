"""s3 storage: inputs downloaded from an S3 bucket, outputs uploaded back to it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar

from fsspec.implementations.dirfs import DirFileSystem
from pydantic import Field, SecretStr

from prefect_pfcon.blocks.storage.objects import ObjectStorage
from prefect_pfcon.lib.filesystems.s3 import readable_errors, s3_filesystem
from prefect_pfcon.models import CopyJob


class S3Storage(ObjectStorage):
    """pfcon's ``s3`` mode: ChRIS files are objects in one bucket of any S3-compatible server
    (AWS, MinIO, Ceph RGW, Swift's s3api). The bucket must exist: a missing one is an error,
    never created here."""

    _block_type_name = "pfcon s3 storage"
    _block_type_slug = "pfcon-s3-storage"
    _description = "ChRIS files in an S3 bucket (pfcon STORAGE_ENV=s3)."

    storage_env: ClassVar[str] = "s3"

    endpoint_url: str = Field(description="S3 endpoint (S3_ENDPOINT_URL), e.g. http://127.0.0.1:9000.")
    access_key: SecretStr = Field(description="Access key id (S3_ACCESS_KEY).")
    secret_key: SecretStr = Field(description="Secret access key (S3_SECRET_KEY).")
    bucket_name: str = Field("users", description="Bucket holding ChRIS files (S3_BUCKET_NAME).")
    region_name: str = Field("us-east-1", description="Region the requests are signed for (S3_REGION_NAME).")

    def server_info(self) -> dict[str, Any]:
        return {**super().server_info(), "s3_endpoint_url": self.endpoint_url}

    def objects(self, timeout: float | None = None) -> DirFileSystem:
        """The bucket as an fsspec filesystem of object names (``timeout``: each request's
        limit, tried once)."""
        s3 = s3_filesystem(
            self.endpoint_url,
            self.access_key.get_secret_value(),
            self.secret_key.get_secret_value(),
            self.region_name,
            max_concurrency=self.transfer_workers,
            timeout=timeout,
        )
        return DirFileSystem(path=self.bucket_name, fs=s3)

    @property
    def object_store(self) -> str:
        return self.endpoint_url

    def check_reachable(self, timeout: float) -> None:
        """The bucket exists and the credentials are accepted."""
        self.check_bucket(self.objects(timeout))

    def readable_errors(self) -> AbstractContextManager[None]:
        return readable_errors(self.endpoint_url)

    def check_bucket(self, objects: DirFileSystem) -> None:
        """Fail readably if the bucket is missing or the credentials are refused (a listing
        of one key, so the error carries the server's message)."""
        objects.fs.call_s3("list_objects_v2", Bucket=self.bucket_name, MaxKeys=1)

    prepare_upload = check_bucket

    def stage_in(self, job: CopyJob) -> int:
        with self.readable_errors():
            self.check_bucket(self.objects())
        return super().stage_in(job)
