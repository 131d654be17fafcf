"""zipfile storage (out of network): inputs arrive as a zip, outputs leave as a zip."""

from __future__ import annotations

from typing import Any, BinaryIO, ClassVar

from pydantic import Field

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock, data_object
from prefect_pfcon.models import PluginJob
from prefect_pfcon.lib.archives import unpack_zip
from prefect_pfcon.lib.chrislink import expand_links
from prefect_pfcon.lib.trees import remove_tree

MIB = 1024 * 1024


class ZipfileStorage(StorageBlock):
    """pfcon's out-of-network mode: the plugin POST carries a zip of the inputs
    (``data_file``), unpacked into ``key-<jid>/incoming``; outputs are fetched as a zip."""

    _block_type_name = "pfcon zipfile storage"
    _block_type_slug = "pfcon-zipfile-storage"
    _description = "Out-of-network storage: inputs uploaded as a zip, outputs downloaded as a zip."

    storage_env: ClassVar[str] = "zipfile"
    innetwork: ClassVar[bool] = False
    requires_data_file: ClassVar[bool] = True
    zips_outputs: ClassVar[bool] = True

    max_unpacked_mb: int = Field(
        10240, ge=1, description="Largest total size, in MiB, an input zip may unpack to."
    )

    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        return self.key_dir_mounts(job.jid)

    def plugin_data(self, job: PluginJob, data_file: BinaryIO | None) -> dict[str, Any]:
        """Unpack ``data_file`` into a fresh ``incoming`` and expand its links.

        Raises ``BadArchive`` (nothing unpacked) for a zip that is bad or unsafe.
        """
        if data_file is None:
            raise ValueError("zipfile storage needs the inputs as data_file")
        incoming = self.incoming(job.jid)
        for stale in (incoming, self.outgoing(job.jid)):
            remove_tree(stale, ignore_errors=True)
        incoming.mkdir(parents=True)
        nfiles = unpack_zip(data_file, incoming, self.max_unpacked_mb * MIB)
        expand_links(incoming)
        return data_object(job.jid, nfiles, incoming)
