"""A ChRIS pipeline as one flow run: each node a whole job of the job flow, branches in parallel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_pfcon.flows.job import job_flow
from prefect_pfcon.models import ChrisJob
from prefect_pfcon.names import DEFAULT_COMPUTE_BLOCK, DEFAULT_STORAGE_BLOCK, PIPELINE_FLOW_NAME, pipeline_tag
from prefect_pfcon.pipelines import ChrisPipeline, node_output_dirs, pipeline_id
from prefect_pfcon.tasks.artifacts import publish_summary

MAX_PARALLEL_NODES = 16


@task(name="pipeline-node", cache_policy=NO_CACHE, task_run_name="node-{index}-{job.jid}")
def run_node(index: int, job: ChrisJob, tag: str, storage_block: str, compute_block: str) -> dict[str, Any]:
    """One node as a whole job (a job flow run tagged with the pipeline's tag)."""
    started = time.monotonic()
    with tags(tag):
        result = asyncio.run(job_flow(  # the job flow is async; this task's thread has no event loop
            job=job, storage_block=storage_block, compute_block=compute_block))
    return {"status": "done", "outputs": result["outputs"], "seconds": round(time.monotonic() - started, 1)}


def _tag_this_run(tag: str) -> None:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, tags=sorted({*run.tags, tag}))


@flow(name=PIPELINE_FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_NODES))
def pipeline_flow(
    pipeline: ChrisPipeline,
    input_dirs: list[str],
    output_dir: str,
    jid_prefix: str | None = None,
    storage_block: str = DEFAULT_STORAGE_BLOCK,
    compute_block: str = DEFAULT_COMPUTE_BLOCK,
) -> list[dict[str, Any]]:
    """Run a ChRIS pipeline on the inputs: the root reads them, every other node its parent's
    outputs; a node starts once its parent is done, siblings run at once. A failed node skips
    its subtree only; the run fails if any node did. Ends with a summary table artifact.

    Args:
        pipeline: The plugin tree: nodes with their plugins and previous_index.
        input_dirs: Storage paths the root node reads, e.g. ['home/alice/uploads/s1'].
        output_dir: Storage path the pipeline's feed goes under, e.g. 'home/alice/feeds/feed_1'.
        jid_prefix: Node jobs are <jid_prefix>-<index>; default: derived from the flow run.
        storage_block: Name of the storage block (e.g. pfcon-storage).
        compute_block: Name of the compute block (e.g. pfcon-compute).
    """
    pid = pipeline_id(pipeline)
    tag = pipeline_tag(pid)
    _tag_this_run(tag)
    get_run_logger().info("Pipeline %s (%s): %d nodes", pid, pipeline.name, len(pipeline.nodes))
    prefix = jid_prefix or f"pl-{str(flow_run.id)[:8]}"
    dirs = node_output_dirs(pipeline, output_dir)
    rows = [{"index": index, "title": node.title, "image": node.plugin.image, "jid": f"{prefix}-{index}",
             "status": "", "output_dir": dirs[index], "outputs": None, "seconds": None}
            for index, node in enumerate(pipeline.nodes)]
    running: dict[PrefectFuture[dict[str, Any]], int] = {}

    def start(index: int) -> None:
        previous = pipeline.nodes[index].previous_index
        job = ChrisJob(plugin=pipeline.nodes[index].plugin, output_dir=dirs[index], jid=rows[index]["jid"],
                       input_dirs=input_dirs if previous is None else [dirs[previous]])
        running[run_node.with_options(tags=[tag]).submit(index, job, tag, storage_block, compute_block)] = index

    start(0)
    while running:
        future = next(as_completed(list(running)))
        index = running.pop(future)
        future.wait()  # its final state, not the server's view of it yet
        if future.state.is_completed():
            rows[index].update(future.result())
            for child in pipeline.children(index):
                start(child)
        else:
            rows[index]["status"] = f"failed: {future.state.message}"
            for below in pipeline.descendants(index):
                rows[below]["status"] = "skipped (parent failed)"
    failed = sum(row["status"].startswith("failed") for row in rows)
    skipped = sum(row["status"].startswith("skipped") for row in rows)
    publish_summary(rows, key=f"pfcon-pipeline-{pid}", description=(
        f"Pipeline {pipeline.name or pid} ({tag}): {len(rows) - failed - skipped} done, "
        f"{failed} failed, {skipped} skipped."))
    if failed:
        raise RuntimeError(f"{failed} of {len(rows)} pipeline nodes failed; see the summary artifact")
    return rows
