"""filesystem storage: the plugin mounts its input and output dirs in place."""

from __future__ import annotations

from typing import Any, BinaryIO, ClassVar

from prefect_pfcon.blocks.storage.base import PluginMounts, StorageBlock, data_object
from prefect_pfcon.models import PluginJob
from prefect_pfcon.lib.outputs import count_files, list_output_files


class FilesystemStorage(StorageBlock):
    """pfcon's ``filesystem`` mode: no copy step, ``input_dirs[0]`` is mounted read-only."""

    _block_type_name = "pfcon filesystem storage"
    _block_type_slug = "pfcon-filesystem-storage"
    _description = "Shared storage mounted in place (pfcon STORAGE_ENV=filesystem)."

    storage_env: ClassVar[str] = "filesystem"

    def plugin_post_error(self, job: PluginJob) -> str | None:
        if not job.output_dir:
            return "output_dir: field is required"
        if not job.input_dirs:
            return "input_dirs: field is required"
        return None

    def plugin_mounts(self, job: PluginJob) -> PluginMounts:
        return PluginMounts(self.resolve(job.input_dirs[0]), self.resolve(job.output_dir or ""))

    def plugin_data(self, job: PluginJob, data_file: BinaryIO | None) -> dict[str, Any]:
        input_dir = self.resolve(job.input_dirs[0])
        return data_object(job.jid, count_files(input_dir), input_dir)

    def list_outputs(self, jid: str, job_output_path: str, plugin_output_dir: str | None = None) -> list[str] | None:
        output_dir = self.resolve(job_output_path)
        if not output_dir.is_dir():
            return None
        return list_output_files(output_dir, skip_chrislinks=False)
