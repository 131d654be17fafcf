"""fsspec filesystems the storage blocks stage data through."""

from prefect_pfcon.lib.filesystems.s3 import S3Error, s3_filesystem
from prefect_pfcon.lib.filesystems.storebase import StoreBaseFileSystem
from prefect_pfcon.lib.filesystems.swift import SwiftError, SwiftFileSystem, readable_errors

__all__ = ["S3Error", "StoreBaseFileSystem", "SwiftError", "SwiftFileSystem", "readable_errors", "s3_filesystem"]
