"""fsspec filesystems the storage blocks stage data through."""

from prefect_pfcon.filesystems.storebase import StoreBaseFileSystem
from prefect_pfcon.filesystems.swift import SwiftError, SwiftFileSystem, readable_errors

__all__ = ["StoreBaseFileSystem", "SwiftError", "SwiftFileSystem", "readable_errors"]
