"""Batch reprocessing: one whole pfcon job (or pipeline run) per selected input, under a
concurrency limit."""

from __future__ import annotations

import asyncio
import posixpath
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_pfcon.blocks import load_storage
from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.flows.job import job_flow
from prefect_pfcon.flows.pipeline import pipeline_flow
from prefect_pfcon.models import ChrisJob, InputSelection, PluginSpec
from prefect_pfcon.pipelines import ChrisPipeline, pipeline_label, plugin_name
from prefect_pfcon.names import DEFAULT_COMPUTE_BLOCK, DEFAULT_STORAGE_BLOCK, REPROCESS_FLOW_NAME
from prefect_pfcon.tasks.artifacts import publish_summary
from prefect_pfcon.lib.paths import normalize_storage_path

CONCURRENCY_LIMIT_NAME = "pfcon-reprocess"
MAX_PARALLEL_INPUTS = 32


def selected_inputs(storage: StorageBlock, inputs: InputSelection) -> list[str]:
    """The storage paths ``inputs`` names: its dirs, then its glob's matches, without repeats."""
    selected = [normalize_storage_path(path) for path in inputs.dirs]
    if inputs.glob:
        selected += storage.filesystem().glob(normalize_storage_path(inputs.glob))
    return list(dict.fromkeys(selected))


def output_dir_for(template: str, input_dir: str, name: str) -> str:
    """``template`` filled with ``{input_dir}``, ``{input_name}`` and ``{plugin}`` (``name``)."""
    filled = template.format(input_dir=input_dir, input_name=posixpath.basename(input_dir), plugin=name)
    return normalize_storage_path(filled)


@task(name="reprocess-input", cache_policy=NO_CACHE, task_run_name="reprocess-{input_dir}")
def reprocess_input(
    work: PluginSpec | ChrisPipeline, input_dir: str, output_dir: str, jid: str, storage_block: str,
    compute_block: str,
) -> dict[str, Any]:
    """One input as a whole job, or a pipeline run (its nodes ``<jid>-<index>``), run under the
    reprocessing concurrency limit."""
    started = time.monotonic()
    with concurrency(CONCURRENCY_LIMIT_NAME, occupy=1):
        if isinstance(work, ChrisPipeline):
            rows = pipeline_flow(pipeline=work, input_dirs=[input_dir], output_dir=output_dir, jid_prefix=jid,
                                 storage_block=storage_block, compute_block=compute_block)
            outputs = sum(row["outputs"] for row in rows)
        else:
            outputs = asyncio.run(job_flow(  # the job flow is async; this task's thread has no event loop
                job=ChrisJob(plugin=work, input_dirs=[input_dir], output_dir=output_dir, jid=jid),
                storage_block=storage_block,
                compute_block=compute_block,
            ))["outputs"]
    return {"input": input_dir, "output": output_dir, "jid": jid, "status": "done",
            "seconds": round(time.monotonic() - started, 1), "outputs": outputs}


def ensure_concurrency_limit(limit: int) -> None:
    """Create or resize the global concurrency limit reprocessing jobs share."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(CONCURRENCY_LIMIT_NAME, limit)


def _work_and_label(
    plugin: PluginSpec | None, pipeline: ChrisPipeline | None
) -> tuple[PluginSpec | ChrisPipeline, str]:
    """What runs on each input and its name in output dirs: exactly one of the two given."""
    if plugin is not None and pipeline is None:
        return plugin, plugin_name(plugin)
    if pipeline is not None and plugin is None:
        return pipeline, pipeline_label(pipeline)
    raise ValueError("Give exactly one of plugin and pipeline")


@flow(name=REPROCESS_FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_INPUTS))
def reprocess_flow(
    inputs: InputSelection,
    plugin: PluginSpec | None = None,
    pipeline: ChrisPipeline | None = None,
    output_template: str = "{input_dir}-{plugin}",
    concurrency_limit: int = 2,
    retries: int = 1,
    force: bool = False,
    storage_block: str = DEFAULT_STORAGE_BLOCK,
    compute_block: str = DEFAULT_COMPUTE_BLOCK,
) -> list[dict[str, Any]]:
    """Run ``plugin`` (or ``pipeline``) on every selected input, at most ``concurrency_limit``
    jobs at once (a Prefect global concurrency limit, shared by all reprocessing runs and never
    by the API's own jobs); failed inputs are retried ``retries`` times; inputs whose output dir
    already has files are skipped unless ``force``. Ends with a summary table artifact.

    Args:
        inputs: Which inputs: storage paths and/or a glob over the storage.
        plugin: The plugin to run on each input (give this or pipeline).
        pipeline: The ChRIS pipeline to run on each input, its feed in the output dir.
        output_template: Each input's output dir; {input_dir}, {input_name} and {plugin}
            (the image's name, or the pipeline's name, else its id) are filled in.
        concurrency_limit: Most reprocessing jobs running at once, over all reprocessing runs.
        retries: How many times a failed input is run again.
        force: Also process inputs whose output dir already has files.
        storage_block: Name of the storage block the inputs are in.
        compute_block: Name of the compute block the plugins run on.
    """
    work, label = _work_and_label(plugin, pipeline)
    logger = get_run_logger()
    storage = load_storage(storage_block)
    if storage.requires_data_file:
        raise ValueError(f"{storage.storage_env} storage has no inputs to reprocess")
    input_dirs = selected_inputs(storage, inputs)
    logger.info("Reprocessing %d inputs with %s", len(input_dirs), label)
    ensure_concurrency_limit(concurrency_limit)
    run_prefix = f"re-{str(flow_run.id)[:8]}"
    fs = storage.filesystem()
    rows: list[dict[str, Any]] = []
    futures = []
    for index, input_dir in enumerate(input_dirs):
        output_dir = output_dir_for(output_template, input_dir, label)
        existing = fs.find(output_dir)
        if existing and not force:
            rows.append({"input": input_dir, "output": output_dir, "jid": "", "status": "skipped (done)",
                         "seconds": 0.0, "outputs": len(existing)})
            continue
        future = reprocess_input.with_options(retries=retries).submit(
            work, input_dir, output_dir, f"{run_prefix}-{index}", storage_block, compute_block
        )
        futures.append((input_dir, output_dir, future))
    for input_dir, output_dir, future in futures:
        future.wait()
        if future.state.is_completed():
            rows.append(future.result())
        else:
            rows.append({"input": input_dir, "output": output_dir, "jid": "",
                         "status": f"failed: {future.state.message}", "seconds": None, "outputs": None})
    done = sum(row["status"] == "done" for row in rows)
    skipped = sum(row["status"].startswith("skipped") for row in rows)
    failed = len(rows) - done - skipped
    publish_summary(rows, key="pfcon-reprocess-summary",
                    description=f"{label} over {len(rows)} inputs: {done} done, {skipped} skipped, {failed} failed.")
    if failed:
        raise RuntimeError(f"{failed} of {len(rows)} inputs failed; see the summary artifact")
    return rows
