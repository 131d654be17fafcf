"""The service's Prometheus metrics: job steps, API requests, Prefect errors, 503 answers and
block edits heard.

One ``ServiceMetrics`` per service instance, on a registry of its own (never the client
library's global one), so several services in one process keep apart. No label takes an
unbounded value: steps, statuses, methods, route templates and codes only (never a jid).
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from uuid import UUID

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.models import JobStep
from prefect_pfcon.service.prefect_calls import RunRefused

STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def prefect_error_kind(exc: BaseException) -> str:
    """What went wrong with a Prefect call, as a label: ``unavailable`` (lost), ``busy``
    (its 503), ``timeout`` (our deadline), ``refused`` (a 4xx refusal), else ``error``."""
    if isinstance(exc, httpx.TransportError):
        return "unavailable"
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 503:
        return "busy"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, RunRefused):
        return "refused"
    return "error"


class _StepLoad(Collector):
    """The gauges of steps waiting and running now, read at scrape time."""

    def __init__(self, steps: Callable[[], Iterable[tuple[StepRequest, bool]]]) -> None:
        self._steps = steps  # each unfinished step, and whether it is on a step thread

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("pfcon_steps_waiting", "Job steps accepted and not yet running on a step "
                                    "thread (waiting for their job's flow run, their turn or a free slot)",
                                    labels=["step"])
        running = GaugeMetricFamily("pfcon_steps_running", "Job steps running on a step thread now",
                                    labels=["step"])
        tally = Tally((request.step, on_thread) for request, on_thread in self._steps())
        for step in JobStep:
            waiting.add_metric([step.value], tally[(step, False)])
            running.add_metric([step.value], tally[(step, True)])
        yield waiting
        yield running


class ServiceMetrics:
    """The metrics of one service instance, and the hooks that move them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._steps_started = Counter("pfcon_steps_started", "Job steps that started running on a step thread",
                                      ["step"], registry=self.registry)
        self._steps_finished = Counter("pfcon_steps_finished", "Job steps that ended, by their task run's final "
                                       "state type", ["step", "status"], registry=self.registry)
        self._step_seconds = Histogram("pfcon_step_duration_seconds", "Time job steps ran on a step thread",
                                       ["step"], buckets=STEP_BUCKETS, registry=self.registry)
        self._requests = Counter("pfcon_http_requests", "API requests answered, by route template and status code",
                                 ["method", "route", "code"], registry=self.registry)
        self._request_seconds = Histogram("pfcon_http_request_duration_seconds", "API request latency until the "
                                          "answer's last byte", ["method", "route"], buckets=REQUEST_BUCKETS,
                                          registry=self.registry)
        self._unavailable = Counter("pfcon_http_unavailable_answers", "API answers 503 (Prefect, the compute "
                                    "environment or a legacy step unavailable or too slow)", ["route"],
                                    registry=self.registry)
        self._prefect_errors = Counter("pfcon_prefect_errors", "Failed calls to the Prefect server, by where "
                                       "they happened and what went wrong", ["source", "kind"],
                                       registry=self.registry)
        self._block_edits = Counter("pfcon_block_edits", "Block edits and deletions heard on Prefect's event "
                                    "stream (the steps started after each load their blocks afresh)",
                                    registry=self.registry)
        self._lock = threading.Lock()
        self._on_threads: dict[UUID, StepRequest] = {}
        self._watched_steps: Callable[[], list[tuple[StepRequest, bool]]] | None = None
        for step in JobStep:  # every step's series exists from the start, so rates see the first one
            self._steps_started.labels(step.value)
            self._step_seconds.labels(step.value)

    # ----- job steps ---------------------------------------------------------------------

    @contextmanager
    def step_running(self, request: StepRequest) -> Iterator[None]:
        """Count the step as started and running on a step thread while the block runs,
        and observe how long it ran."""
        self._steps_started.labels(request.step.value).inc()
        with self._lock:
            self._on_threads[request.key] = request
        started = time.monotonic()
        try:
            yield
        finally:
            self._step_seconds.labels(request.step.value).observe(time.monotonic() - started)
            with self._lock:
                self._on_threads.pop(request.key, None)

    def step_finished(self, request: StepRequest, status: str) -> None:
        """The step ended in a final state of type ``status`` (a Prefect ``StateType`` value)."""
        self._steps_finished.labels(request.step.value, status.lower()).inc()

    def watch_steps(self, unfinished: Callable[[], Iterable[StepRequest]]) -> None:
        """Read the waiting and running gauges at scrape time: ``unfinished`` gives the steps
        accepted and not ended; those on a step thread are running, the others waiting."""
        def steps() -> list[tuple[StepRequest, bool]]:
            with self._lock:
                on_threads = dict(self._on_threads)
            waiting = [(request, False) for request in unfinished() if request.key not in on_threads]
            return waiting + [(request, True) for request in on_threads.values()]

        self._watched_steps = steps
        self.registry.register(_StepLoad(steps))

    def step_load(self) -> tuple[int, int] | None:
        """How many steps run and wait now, or ``None`` when no runner of this process is watched."""
        if self._watched_steps is None:
            return None
        tally = Tally(on_thread for _, on_thread in self._watched_steps())
        return tally[True], tally[False]

    # ----- API and Prefect -----------------------------------------------------------------

    def request_answered(self, method: str, route: str, code: int, seconds: float) -> None:
        """An API request was answered ``code`` after ``seconds``; ``route`` is its template."""
        method = method if method in METHODS else "other"
        self._requests.labels(method, route, str(code)).inc()
        self._request_seconds.labels(method, route).observe(seconds)
        if code == 503:
            self._unavailable.labels(route).inc()

    def prefect_error(self, source: str, exc: BaseException) -> None:
        """A call to Prefect failed (``source``: ``api`` or ``runner``)."""
        self._prefect_errors.labels(source, prefect_error_kind(exc)).inc()

    def block_edit_heard(self) -> None:
        """A block edit or deletion reached this service."""
        self._block_edits.inc()

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return generate_latest(self.registry)
