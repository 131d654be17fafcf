"""Artifacts operators see in the Prefect UI beside a reprocessing or pipeline run."""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE


def artifact_key(*parts: str) -> str:
    """An artifact key from free text (Prefect allows lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(rows: list[dict[str, Any]], key: str, description: str) -> None:
    """A table artifact with one row per processed item."""
    create_table_artifact(table=rows, key=artifact_key(key), description=description)
