"""``GET /metrics`` scraped before and after real lifecycles: the counters move by exactly what
the jobs and requests did, the histograms count the steps, route labels are templates (no jid
anywhere), the gauges read the runner's own state, and the token setting is honoured."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pfconclient.client import JobType
from prometheus_client.parser import text_string_to_metric_families

from conftest import Service, _start_service, _stop, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_faults import PrefectServer, running_prefect_server
from test_fslink_lifecycle import copied_job, delete_and_forget, plugin_descriptors, sh_plugin
from test_legacy_api import legacy, refused

MAX_FORM_BYTES = 16 * 1024 * 1024
STEPS = ("copy", "plugin", "upload", "delete")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(service: Service) -> str:
    return service.url.removesuffix("/api/v1/") + "/metrics"


def scrape(service: Service, headers: dict[str, str] | None = None) -> tuple[Samples, str]:
    """Every sample of the service's metrics, parsed by the client library, and the raw text."""
    response = requests.get(metrics_url(service), headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {(sample.name, frozenset(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(response.text) for sample in family.samples}
    return samples, response.text


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series not yet exposed is 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def metrics_jid() -> str:
    return f"metrics-{uuid.uuid4().hex[:10]}"


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_lifecycles_move_the_counters_exactly(fslink_service: Service):
    """A succeeding job (copy, plugin, delete, DELETE), a failing plugin, 404s, a 401 and a 413."""
    service = fslink_service
    make_fslink_fixture(service.store_base)
    client = service.client()
    before, _ = scrape(service)  # no token: the default needs none
    good, good_out = copied_job(service)
    client.submit_job(JobType.PLUGIN, good, sh_plugin(good_out, 'echo ok > "$2"/ok.txt'))
    assert wait_status(client, JobType.PLUGIN, good, timeout=180)["status"] == "finishedSuccessfully"
    delete_and_forget(client, good)  # its last GET answers 404
    bad, bad_out = copied_job(service)
    client.submit_job(JobType.PLUGIN, bad, sh_plugin(bad_out, "exit 3"))
    assert wait_status(client, JobType.PLUGIN, bad, timeout=180)["status"] == "finishedWithError"
    unknown = metrics_jid()
    assert raw(service, "GET", f"pluginjobs/{unknown}/").status_code == 404
    assert raw(service, "GET", f"copyjobs/{unknown}/", headers={}).status_code == 401
    too_large = raw(service, "POST", "copyjobs/", data=b"x" * (MAX_FORM_BYTES + 1),
                    headers={**service.headers(), "Content-Type": "application/x-www-form-urlencoded"})
    assert too_large.status_code == 413  # answered before routing
    stray = f"nowhere-{uuid.uuid4().hex[:8]}"
    assert raw(service, "GET", stray).status_code == 404
    after, text = scrape(service)

    for step, count in (("copy", 2), ("plugin", 2), ("upload", 0), ("delete", 1)):
        assert moved(before, after, "pfcon_steps_started_total", step=step) == count, step
        assert moved(before, after, "pfcon_step_duration_seconds_count", step=step) == count, step
        assert moved(before, after, "pfcon_step_duration_seconds_bucket", step=step, le="+Inf") == count, step
        assert value(after, "pfcon_steps_waiting", step=step) == 0
        assert value(after, "pfcon_steps_running", step=step) == 0
    assert moved(before, after, "pfcon_step_duration_seconds_sum", step="plugin") > 0
    finished = {(step, status): moved(before, after, "pfcon_steps_finished_total", step=step, status=status)
                for step in STEPS for status in ("completed", "failed", "cancelled", "crashed")}
    assert {key: count for key, count in finished.items() if count} == {
        ("copy", "completed"): 2, ("plugin", "completed"): 1, ("plugin", "failed"): 1, ("delete", "completed"): 1}

    def requests_moved(method: str, route: str, code: int) -> float:
        return moved(before, after, "pfcon_http_requests_total", method=method, route=route, code=str(code))

    assert requests_moved("POST", "/api/v1/copyjobs/", 201) == 2
    assert requests_moved("POST", "/api/v1/pluginjobs/", 201) == 2
    assert requests_moved("POST", "/api/v1/copyjobs/", 413) == 1
    assert requests_moved("POST", "/api/v1/deletejobs/", 201) == 1
    assert requests_moved("DELETE", "/api/v1/pluginjobs/{jid}/", 204) == 1
    assert requests_moved("GET", "/api/v1/pluginjobs/{jid}/", 404) == 2  # delete_and_forget's and ours
    assert requests_moved("GET", "/api/v1/copyjobs/{jid}/", 401) == 1
    assert requests_moved("GET", "unmatched", 404) == 1
    assert requests_moved("GET", "/metrics", 200) == 1  # the first scrape
    assert requests_moved("GET", "/api/v1/pluginjobs/{jid}/", 200) >= 2  # the status polls
    assert moved(before, after, "pfcon_http_request_duration_seconds_count", method="POST",
                 route="/api/v1/pluginjobs/") == 2
    assert moved(before, after, "pfcon_http_unavailable_answers_total", route="/api/v1/pluginjobs/") == 0

    routes = set(re.findall(r'route="([^"]*)"', text))
    assert routes and all(route in ("unmatched", "/metrics") or route.startswith("/api/v1/") for route in routes)
    assert "/api/v1/pluginjobs/{jid}/" in routes
    for secret in (good, bad, unknown, stray, good_out, bad_out):
        assert secret not in text


@pytest.fixture(scope="module")
def prefect_server(session_tmp: Path) -> Iterator[PrefectServer]:
    with running_prefect_server(session_tmp / f"prefect-metrics-{uuid.uuid4().hex[:8]}") as server:
        yield server


@pytest.fixture(scope="module")
def guarded_service(session_tmp: Path, prefect_server: PrefectServer) -> Iterator[Service]:
    """fslink on a Prefect server of its own, one step thread, /metrics behind the token,
    legacy requests that wait 0.5 s for their steps, and Prefect clients that retry a call twice
    (2 s, 4 s) before the service sees it fail, where by default they hold it for about a minute."""
    env = {"PREFECT_API_URL": prefect_server.url, "PREFECT_HOME": str(prefect_server.home),
           "PFCON_METRICS_TOKEN_REQUIRED": "true", "PFCON_RUNNER_CONCURRENCY": "1",
           "PFCON_LEGACY_WAIT_SECONDS": "0.5", "PFCON_PREFECT_DEADLINE_SECONDS": "5",
           "PREFECT_CLIENT_MAX_RETRIES": "2"}
    service = _start_service(session_tmp, "metrics-guarded", "fslink", env, 0)
    make_fslink_fixture(service.store_base)
    yield service
    _stop(service)


def test_token_required_gauges_and_503s(guarded_service: Service):
    """With ``PFCON_METRICS_TOKEN_REQUIRED=true`` /metrics needs the pfcon JWT; a plugin on the
    only step thread is running, the steps behind it wait, and a legacy request that outlasts
    its wait is a counted 503."""
    service = guarded_service
    missing = requests.get(metrics_url(service), timeout=30)
    assert (missing.status_code, missing.json()) == (401, {"message": "Missing authorization header."})
    forged = requests.get(metrics_url(service), headers={"Authorization": "Bearer x.y.z"}, timeout=30)
    assert (forged.status_code, forged.json()) == (401, {"message": "Invalid authorization token."})
    headers = service.headers()
    before, _ = scrape(service, headers)
    assert value(before, "pfcon_http_requests_total", method="GET", route="/metrics", code="401") == 2  # a fresh service
    client = service.client()
    busy, busy_out = copied_job(service)
    client.submit_job(JobType.PLUGIN, busy, sh_plugin(busy_out, "sleep 6"))

    def load() -> dict[tuple[str, str], float]:
        samples, _ = scrape(service, headers)
        return {(kind, step): value(samples, f"pfcon_steps_{kind}", step=step)
                for kind in ("waiting", "running") for step in STEPS}

    wait_for(lambda: load()[("running", "plugin")] == 1)
    queued = metrics_jid()
    client.submit_job(JobType.COPY, queued, {"input_dirs": ["home/alice/feed/in"], "output_dir": f"home/alice/{queued}"})
    legacy_jid = metrics_jid()
    (early,) = legacy(service, ["submit_job", legacy_jid, plugin_descriptors(f"home/alice/{legacy_jid}")])
    assert refused(early) == (503, "The copy job did not end within 0.5 s; try again.")
    now = load()
    assert {key: count for key, count in now.items() if count} == {("running", "plugin"): 1, ("waiting", "copy"): 2}

    assert wait_status(client, JobType.PLUGIN, busy, timeout=120)["status"] == "finishedSuccessfully"
    for jid in (queued, legacy_jid):
        assert wait_status(client, JobType.COPY, jid, timeout=60)["status"] == "finishedSuccessfully"
    wait_for(lambda: not any(load().values()))
    after, text = scrape(service, headers)
    assert moved(before, after, "pfcon_http_unavailable_answers_total", route="/api/v1/jobs/") == 1
    assert moved(before, after, "pfcon_http_requests_total", method="POST", route="/api/v1/jobs/", code="503") == 1
    assert moved(before, after, "pfcon_steps_started_total", step="copy") == 3
    assert moved(before, after, "pfcon_steps_finished_total", step="copy", status="completed") == 3
    for jid in (busy, queued, legacy_jid):
        assert jid not in text


def test_prefect_errors_are_counted(guarded_service: Service, prefect_server: PrefectServer):
    """Prefect stopped: a step accepted meanwhile waits for its flow run while the runner's
    failed calls are counted; it runs once Prefect is back."""
    service = guarded_service
    headers = service.headers()
    client = service.client()
    before, _ = scrape(service, headers)
    prefect_server.stop()
    try:
        jid = metrics_jid()
        accepted = client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"],
                                                         "output_dir": f"home/alice/{jid}"})
        assert accepted["compute"]["status"] == "notStarted"

        def errors() -> float:
            samples, _ = scrape(service, headers)
            return moved(before, samples, "pfcon_prefect_errors_total", source="runner", kind="unavailable")

        wait_for(lambda: errors() >= 2, timeout=60)
        during, _ = scrape(service, headers)
        assert value(during, "pfcon_steps_waiting", step="copy") == 1
        assert value(during, "pfcon_steps_running", step="copy") == 0
    finally:
        prefect_server.start()
    assert wait_status(client, JobType.COPY, jid, timeout=120)["status"] == "finishedSuccessfully"
    after, _ = scrape(service, headers)
    assert moved(before, after, "pfcon_steps_finished_total", step="copy", status="completed") == 1
    assert value(after, "pfcon_steps_waiting", step="copy") == 0
