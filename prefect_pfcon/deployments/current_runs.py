"""The newest run of each job step, kept in memory and updated from Prefect's event stream.

Every status GET and every POST guard needs the newest run of a (jid, step). Reading it from
Prefect each time is a query on the server that also runs the job steps; here the runs of a
jid are read once, then follow the state-change events of the step deployments' runs (each
names its run, ``<step>-<jid>``, and the new state). An event about a run not known here (one
started from the Prefect UI, say) makes that step's runs be read again. The stream drops events
for a subscriber that falls behind, so an unfinished job's runs are also read again once they
are ``active_max_age`` seconds old.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from prefect.client.schemas.objects import FlowRun, State, StateType

from prefect_pfcon.deployments.event_stream import StepRunChange
from prefect_pfcon.deployments.runs import JobRuns
from prefect_pfcon.flows.naming import parse_run_name
from prefect_pfcon.models import JobStep

REREADS_ON_CHANGE = 3


@dataclass
class _JidRuns:
    """What is known of one jid: the newest run of each step (``None``: it has none; a step
    missing: not known). ``version`` counts the changes heard of."""

    runs: dict[JobStep, FlowRun | None] = field(default_factory=dict)
    read_at: float = 0.0
    version: int = 0
    reading: asyncio.Future[dict[JobStep, FlowRun]] | None = field(default=None, repr=False)


def with_state(run: FlowRun, state: State) -> FlowRun:
    """``run`` after entering ``state``, with the start and end times Prefect gives it."""
    start_time = run.start_time or (state.timestamp if state.type is StateType.RUNNING else None)
    end_time = state.timestamp if state.is_final() else None
    return run.model_copy(update={"state": state, "start_time": start_time, "end_time": end_time})


class CurrentRuns:
    """The newest runs of recently used jids, read through ``JobRuns``."""

    def __init__(
        self,
        runs: JobRuns,
        active_max_age: float = 10.0,
        idle_max_age: float = 300.0,
        capacity: int = 10_000,
    ) -> None:
        self._runs = runs
        self._active_max_age = active_max_age
        self._idle_max_age = idle_max_age
        self._capacity = capacity
        self._jids: OrderedDict[str, _JidRuns] = OrderedDict()

    async def newest(self, step: JobStep, jid: str) -> FlowRun | None:
        """The newest run of (jid, step), removed or not, or ``None``."""
        known = self._known(jid)
        if step not in known.runs or self._expired(known):
            return (await self._read(jid, known)).get(step)
        return known.runs[step]

    async def read(self, jid: str) -> dict[JobStep, FlowRun]:
        """The newest run of each step of ``jid``, read from Prefect now."""
        known = self._known(jid)
        known.version += 1
        return await self._read(jid, known)

    def record(self, step: JobStep, jid: str, run: FlowRun) -> None:
        """Remember a run this process just created or changed."""
        known = self._known(jid)
        known.version += 1
        known.runs[step] = run

    def apply(self, change: StepRunChange) -> None:
        """Follow a state change heard from Prefect."""
        known = self._jids.get(change.jid)
        if known is None:
            return
        known.version += 1
        run = known.runs.get(change.step)
        if run is None or run.id != change.run_id or change.state is None:
            known.runs.pop(change.step, None)  # read again when next asked
        elif run.state is None or change.state.timestamp >= run.state.timestamp:
            known.runs[change.step] = with_state(run, change.state)

    def run_ended(self, run: FlowRun, state: State) -> None:
        """A run this process executed ended: follow it now, without waiting for its event."""
        step_and_jid = parse_run_name(run.name)
        if step_and_jid is not None:
            self.apply(StepRunChange(*step_and_jid, run.id, state))

    def forget_all(self) -> None:
        """Changes may have gone unheard: read every jid again when next asked."""
        for known in self._jids.values():
            known.version += 1
            known.runs = {}

    def _known(self, jid: str) -> _JidRuns:
        known = self._jids.get(jid)
        if known is None:
            known = self._jids[jid] = _JidRuns()
            while len(self._jids) > self._capacity:
                self._jids.popitem(last=False)
        else:
            self._jids.move_to_end(jid)
        return known

    def _expired(self, known: _JidRuns) -> bool:
        active = any(
            run is not None and (run.state is None or not run.state.is_final()) for run in known.runs.values()
        )
        return time.monotonic() - known.read_at > (self._active_max_age if active else self._idle_max_age)

    async def _read(self, jid: str, known: _JidRuns) -> dict[JobStep, FlowRun]:
        """Read ``jid``'s runs once for all concurrent askers. A read overtaken by a change is
        repeated (a few times at most); what was outdated before it arrived is never kept."""
        if known.reading is None:
            known.reading = asyncio.ensure_future(self._read_until_current(known, jid))
            known.reading.add_done_callback(lambda _: setattr(known, "reading", None))
        return await asyncio.shield(known.reading)

    async def _read_until_current(self, known: _JidRuns, jid: str) -> dict[JobStep, FlowRun]:
        for _ in range(REREADS_ON_CHANGE):
            version = known.version
            runs = await self._runs.newest_runs(jid)
            if known.version == version:
                known.runs = {step: runs.get(step) for step in JobStep}
                known.read_at = time.monotonic()
                break
        return runs
