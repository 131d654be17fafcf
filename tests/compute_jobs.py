"""Key dirs and plugin container jobs for the compute block tests."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect_pfcon.blocks.compute import ContainerJob

BUSYBOX = "local/busybox:test"


def make_key_dir(base: Path) -> Path:
    """A fresh ``key-*`` dir under ``base`` with ``incoming/a.txt`` and an empty ``outgoing``."""
    job_dir = base / f"key-{uuid.uuid4().hex[:6]}"
    (job_dir / "incoming").mkdir(parents=True)
    (job_dir / "outgoing").mkdir()
    (job_dir / "incoming" / "a.txt").write_text("input\n")
    return job_dir


def plugin_job(key_dir: Path, script: str, prefix: str, **overrides) -> ContainerJob:
    """A plugin running ``sh -c script`` on ``key_dir``, named ``<prefix>-<random>``, labelled as
    the plugin flow labels its containers."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    values = dict(name=name, image=BUSYBOX, command=["sh", "-c", script], env=["GREETING=hello=world"],
                  cpu_limit=500, memory_limit=200, gpu_limit=0, number_of_workers=1,
                  incoming=key_dir / "incoming", outgoing=key_dir / "outgoing",
                  labels={"org.chrisproject.jid": name, "org.chrisproject.job_type": "plugin",
                          "io.prefect.flow-run-id": str(uuid.uuid4())})
    return ContainerJob(**{**values, **overrides})
