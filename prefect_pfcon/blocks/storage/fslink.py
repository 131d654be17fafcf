"""fslink storage: inputs are copied (links resolved) into the key dir, outputs go in place."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock
from prefect_pfcon.lib.filesystems import StoreBaseFileSystem
from prefect_pfcon.models import PluginJob
from prefect_pfcon.lib.outputs import list_output_files


class FSLinkStorage(StorageBlock):
    """pfcon's ``fslink`` mode: a shared filesystem with ChRIS ``.chrislink`` files.

    The copy step stages each input dir (following links) into ``key-<jid>/incoming``;
    the plugin writes straight into ``output_dir``.
    """

    _block_type_name = "pfcon fslink storage"
    _block_type_slug = "pfcon-fslink-storage"
    _description = "ChRIS shared storage with .chrislink resolution (pfcon STORAGE_ENV=fslink)."

    storage_env: ClassVar[str] = "fslink"
    requires_copy_job: ClassVar[bool] = True

    hardlink_inputs: bool = Field(
        True,
        description="Stage inputs as hard links (zero-copy; byte copies across filesystems).",
    )

    def filesystem(self) -> StoreBaseFileSystem:
        return StoreBaseFileSystem(self.root, hardlink=self.hardlink_inputs)

    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        return PluginMounts(self.incoming(job.jid), self.resolve(job.output_dir or ""))

    def list_outputs(self, jid: str, job_output_path: str, plugin_output_dir: str | None = None) -> list[str] | None:
        """The listing; ``.chrislink`` files are removed (as pfcon does) only from the output
        dir the jid's plugin wrote, never from another dir a client names."""
        output_dir = self.resolve(job_output_path)
        if not output_dir.is_dir():
            return None
        own = plugin_output_dir is not None and self.resolve(plugin_output_dir) == output_dir
        return list_output_files(output_dir, skip_chrislinks=True, delete_chrislinks=own)
