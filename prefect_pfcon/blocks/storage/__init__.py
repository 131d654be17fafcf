"""Storage blocks: one interface (``StorageBlock``), one small class per pfcon storage mode."""

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock
from prefect_pfcon.blocks.storage.filesystem import FilesystemStorage
from prefect_pfcon.blocks.storage.fslink import FSLinkStorage
from prefect_pfcon.blocks.storage.objects import ObjectStorage
from prefect_pfcon.blocks.storage.s3 import S3Storage
from prefect_pfcon.blocks.storage.swift import SwiftStorage
from prefect_pfcon.blocks.storage.zipfile import ZipfileStorage

STORAGE_BLOCKS: dict[str, type[StorageBlock]] = {
    cls.storage_env: cls for cls in (FSLinkStorage, FilesystemStorage, SwiftStorage, S3Storage, ZipfileStorage)
}

__all__ = [
    "STORAGE_BLOCKS",
    "FSLinkStorage",
    "FilesystemStorage",
    "ObjectStorage",
    "PluginMounts",
    "S3Storage",
    "StorageBlock",
    "SwiftStorage",
    "ZipfileStorage",
]
