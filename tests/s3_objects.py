"""Direct access to the test S3 bucket, to seed inputs and check uploads."""

from __future__ import annotations

from fsspec.implementations.dirfs import DirFileSystem

from conftest import S3_TEST_BUCKET
from prefect_pfcon.lib.filesystems import s3_filesystem


def s3_bucket(credentials: dict[str, str]) -> DirFileSystem:
    """The test bucket as an fsspec filesystem of object names (created if missing)."""
    s3 = s3_filesystem(
        credentials["S3_ENDPOINT_URL"], credentials["S3_ACCESS_KEY"], credentials["S3_SECRET_KEY"],
        credentials["S3_REGION_NAME"],
    )
    if not s3.exists(S3_TEST_BUCKET):
        s3.mkdir(S3_TEST_BUCKET)
    return DirFileSystem(path=S3_TEST_BUCKET, fs=s3)
