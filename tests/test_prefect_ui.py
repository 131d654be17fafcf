"""The Prefect UI, in a real headless Chromium, as an operator uses it: log in with the server's
auth string, find a job's flow run and its steps, read the plugin's output in the plugin step's
logs, and fill in the whole-job deployment's typed run form."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import make_fslink_fixture
from prefect_ui import PrefectUI, start_chromium
from test_fslink_lifecycle import copy_inputs, sh_plugin

MARKER = f"ui-marker-{uuid.uuid4().hex[:12]}"
# printed from two words, so the plugin's command line (which pfcon logs too) never contains MARKER
PLUGIN_SCRIPT = f"printf '%s-%s\\n' {' '.join(MARKER.rsplit('-', 1))}; cp -r \"$1\"/. \"$2\"/"


def step_names(jid: str) -> list[str]:
    return [f"copy-{jid}", f"plugin-{jid}", f"delete-{jid}"]


def run_job(service: Service, jid: str, script: str) -> None:
    """Run the job ``jid`` as CUBE does, through the pfcon API: copy, a plugin running
    ``script`` on fslink inputs, delete (one flow run ``job-<jid>``, its steps task runs)."""
    client = service.client()
    output_dir = f"home/alice/feeds/{jid}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script))
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"


@pytest.fixture(scope="module")
def jid(fslink_service: Service) -> str:
    """A finished job whose plugin printed MARKER."""
    make_fslink_fixture(fslink_service.store_base)
    jid = f"h9-ui-{uuid.uuid4().hex[:8]}"
    run_job(fslink_service, jid, PLUGIN_SCRIPT)
    return jid


def _screenshot(ui: PrefectUI, directory: Path, name: str) -> None:
    ui.driver.save_screenshot(str(directory / f"prefect-ui-{name}.png"))


@pytest.fixture(scope="module")
def logged_in(fslink_service: Service, session_tmp: Path) -> Iterator[PrefectUI]:
    """The service's Prefect UI, logged in through its login page with the server's auth string."""
    ui = PrefectUI(start_chromium(), fslink_service.prefect_api_url.removesuffix("/api"))
    try:
        try:
            ui.log_in(fslink_service.prefect_auth)
        except Exception:
            _screenshot(ui, session_tmp, "login")
            raise
        yield ui
    finally:
        ui.driver.quit()


@pytest.fixture
def ui(logged_in: PrefectUI, request: pytest.FixtureRequest, session_tmp: Path) -> Iterator[PrefectUI]:
    """The logged-in UI; a screenshot in PFCON_TEST_TMP when the test fails."""
    failed_before = request.session.testsfailed
    yield logged_in
    if request.session.testsfailed > failed_before:
        _screenshot(logged_in, session_tmp, request.node.name)


def test_job_run_lists_its_steps(ui: PrefectUI, jid: str):
    ui.open_flow_run(f"job-{jid}")
    assert sorted(ui.step_links(step_names(jid))) == sorted(step_names(jid))


def test_plugin_step_shows_what_the_plugin_printed(ui: PrefectUI, jid: str):
    ui.open_flow_run(f"job-{jid}")
    plugin_step = f"plugin-{jid}"
    line = ui.logs_show(ui.step_links(step_names(jid))[plugin_step], plugin_step, MARKER)
    assert line.is_displayed()


def test_job_deployment_run_form_is_typed(ui: PrefectUI):
    ui.open_custom_run("pfcon-job")
    assert ui.field_input("Image").tag_name == "textarea"
    assert "Plugin image on the compute backend" in ui.field("Image").text  # the field's description
    assert ui.choices("Type (Optional)") == ["fs", "ds", "ts"]
    cpu_limit = ui.field_input("Cpu Limit (Optional)")
    assert (cpu_limit.get_attribute("type"), cpu_limit.get_attribute("value")) == ("number", "1000")
    assert "Add item" in ui.field("Input Dirs").text  # a list of paths
    assert ui.field_input("Output Dir").tag_name == "textarea"
    assert ui.field_input("storage_block (Optional)").get_attribute("value") == "pfcon-storage"
    assert ui.field_input("compute_block (Optional)").get_attribute("value") == "pfcon-compute"
    assert ui.field_input("cleanup (Optional)").get_attribute("role") == "switch"
