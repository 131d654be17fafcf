"""Artifacts operators see in the Prefect UI: a plugin's outputs, a reprocessing summary."""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.models import PluginJob

MAX_ROWS = 1000


def artifact_key(*parts: str) -> str:
    """An artifact key from free text (Prefect allows lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@task(name="publish-outputs", cache_policy=NO_CACHE)
def publish_outputs(storage: StorageBlock, job: PluginJob) -> int:
    """A table artifact of the plugin's output files; returns how many there are."""
    files = storage.output_files(job)
    shown = f"the first {MAX_ROWS} of " if len(files) > MAX_ROWS else ""
    create_table_artifact(
        table=[{"file": name} for name in files[:MAX_ROWS]],
        key=artifact_key("pfcon-outputs", job.jid),
        description=f"Outputs of plugin job `{job.jid}` ({job.image}): {shown}{len(files)} files "
        f"in `{job.output_dir or 'outgoing'}`.",
    )
    return len(files)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(rows: list[dict[str, Any]], key: str, description: str) -> None:
    """A table artifact with one row per processed item."""
    create_table_artifact(table=rows, key=artifact_key(key), description=description)
