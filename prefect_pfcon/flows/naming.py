"""Flow run names that carry the jid, also for runs triggered from the Prefect UI."""

from __future__ import annotations

from collections.abc import Callable

from prefect.runtime import flow_run

from prefect_pfcon.models import JobStep


def run_name(step: JobStep) -> Callable[[], str]:
    """A ``flow_run_name`` callable giving ``<step>-<jid>``."""

    def name() -> str:
        job = flow_run.parameters.get("job")
        jid = job.get("jid") if isinstance(job, dict) else getattr(job, "jid", "")
        return f"{step.value}-{jid}"

    return name


def run_name_for(step: JobStep, jid: str) -> str:
    """The same name, known in advance (the API names runs when it creates them)."""
    return f"{step.value}-{jid}"


def parse_run_name(name: str) -> tuple[JobStep, str] | None:
    """``(step, jid)`` of a run named ``<step>-<jid>``, or ``None`` for any other name."""
    step, _, jid = name.partition("-")
    if not jid or step not in {member.value for member in JobStep}:
        return None
    return JobStep(step), jid
