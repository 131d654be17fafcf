"""Complete fslink lifecycles over HTTP with python-pfconclient, through real flow runs
and real containers, asserting HTTP answers, files on disk and Prefect's records."""

from __future__ import annotations

import time
import uuid

from pfconclient.client import JobType
from pfconclient.exceptions import PfconRequestException
import pytest

from conftest import Service, wait_status
from fixtures_tree import make_fslink_fixture

BUSYBOX = "local/busybox:test"
# $1=--dir $2=/share/incoming (localized) $3=/share/incoming (ds) $4=/share/outgoing
COPY_SCRIPT = 'echo start; cp -r "$3"/. "$4"/; echo new > "$4"/new.txt; echo done'


def plugin_descriptors(output_dir: str, **overrides) -> dict:
    descriptors = {
        "entrypoint": ["sh", "-c", COPY_SCRIPT, "sh"],
        "args": ["--dir", "whatever"],
        "args_path_flags": ["--dir"],
        "auid": "cube",
        "number_of_workers": 1,
        "cpu_limit": 1000,
        "memory_limit": 200,
        "gpu_limit": 0,
        "image": BUSYBOX,
        "type": "ds",
        "env": ["A=1", "B=x=y"],
        "input_dirs": ["home/alice/feed/in"],
        "output_dir": output_dir,
    }
    descriptors.update(overrides)
    return descriptors


def new_jid() -> str:
    return f"chris-jid-{uuid.uuid4().hex[:10]}"


def prefect_runs(service: Service, name: str) -> list[dict]:
    """The task runs of a job step named ``name`` (``<step>-<jid>``), newest first. Prefect
    writes task-run rows from the engine's events, up to a second or so after the fact."""
    body = {"task_runs": {"name": {"any_": [name]}}, "sort": "EXPECTED_START_TIME_DESC"}
    return service.prefect("post", "/task_runs/filter", json=body).json()


def job_runs(service: Service, jid: str) -> list[dict]:
    """The flow runs of a job, ``job-<jid>``, newest first."""
    body = {"flow_runs": {"name": {"any_": [f"job-{jid}"]}}, "sort": "EXPECTED_START_TIME_DESC"}
    return service.prefect("post", "/flow_runs/filter", json=body).json()


def settled_runs(service: Service, name: str, count: int = 1, timeout: float = 30) -> list[dict]:
    """``prefect_runs``, once there are ``count`` of them and none is unfinished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = prefect_runs(service, name)
        settled = len(runs) >= count and all(run["state_type"] not in ("PENDING", "RUNNING") for run in runs)
        if settled or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def prefect_logs(service: Service, run_id: str, of: str = "task_run_id") -> list[dict]:
    """Every Prefect log record of a step's task run (``of="flow_run_id"``: of a job's flow
    run, its steps' included), oldest first."""
    records: list[dict] = []
    while True:
        body = {"logs": {of: {"any_": [run_id]}}, "limit": 200, "offset": len(records)}
        page = service.prefect("post", "/logs/filter", json=body).json()
        records += page
        if len(page) < 200:
            return records


def prefect_log_messages(service: Service, task_run_id: str) -> list[str]:
    """The lines of a task run's Prefect logs (a record may hold several plugin lines)."""
    return [line for log in prefect_logs(service, task_run_id) for line in log["message"].split("\n")]


def copy_inputs(service: Service, jid: str, output_dir: str, input_dirs=("home/alice/feed/in",)) -> dict:
    client = service.client()
    answer = client.submit_job(
        JobType.COPY, jid, {"input_dirs": list(input_dirs), "output_dir": output_dir}
    )
    assert answer["compute"]["status"] in ("notStarted", "started", "finishedSuccessfully")
    return wait_status(client, JobType.COPY, jid)


def copied_job(service: Service) -> tuple[str, str]:
    """A new jid whose fslink copy step finished; the jid and a fresh output dir."""
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    return jid, output_dir


def sh_plugin(output_dir: str | None, script: str, **overrides) -> dict:
    """Plugin descriptors running ``sh -c script`` ($1 /share/incoming, $2 /share/outgoing for ds)."""
    return plugin_descriptors(output_dir, entrypoint=["sh", "-c", script, "sh"], args=[],
                              args_path_flags=[], **overrides)


def submit_and_wait_started(client, jid: str, descriptors: dict, timeout: float = 60) -> None:
    """POST a plugin job and wait until its status is ``started``."""
    client.submit_job(JobType.PLUGIN, jid, descriptors)
    deadline = time.monotonic() + timeout
    while client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] != "started":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def finished_plugin(service: Service, script: str, **overrides) -> tuple[str, str, dict]:
    """Copy, then run ``sh -c script`` as the plugin until it ends: jid, output dir, compute."""
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script, **overrides))
    return jid, output_dir, wait_status(client, JobType.PLUGIN, jid, timeout=180)


def delete_and_forget(client, jid: str) -> None:
    """The end of CUBE's lifecycle: the delete step, then DELETE of the plugin job (gone after)."""
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    client.delete_job(JobType.PLUGIN, jid)
    with pytest.raises(PfconRequestException) as missing:
        client.get_job_status(JobType.PLUGIN, jid)
    assert missing.value.code == 404


def test_server_info(fslink_service: Service):
    info = fslink_service.client().get_server_info()
    assert info == {
        "server_version": info["server_version"],
        "pfcon_innetwork": True,
        "storage_env": "fslink",
        "requires_copy_job": True,
        "requires_upload_job": False,
        "container_env": "docker",
        "compute_volume_type": "host",
    }
    assert info["server_version"] == "0.1.0"


def test_full_fslink_lifecycle(fslink_service: Service, docker_client):
    service, store = fslink_service, fslink_service.store_base
    make_fslink_fixture(store)
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"

    # copy: a flow run stages the inputs with .chrislink resolution
    first = client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
    assert first == {"compute": {"jid": jid, "image": "", "cmd": "pfcon-copy", "status": "notStarted",
                                 "message": "created", "timestamp": "0001-01-01T00:00:00Z", "logs": ""}}
    repeat = client.submit_job(JobType.COPY, jid, {"input_dirs": ["elsewhere"], "output_dir": output_dir})
    assert repeat["compute"]["status"] in ("notStarted", "started", "finishedSuccessfully")
    copy = wait_status(client, JobType.COPY, jid)
    assert copy["status"] == "finishedSuccessfully", copy
    assert copy["message"] == "exited" and copy["timestamp"].endswith("Z")
    assert "Staged 4 files" in copy["logs"]
    incoming = store / f"key-{jid}" / "incoming"
    staged = sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*") if p.is_file())
    assert staged == ["a.txt", "home_bob_uploads_x/x.txt", "sub/SHARED_data/s1.txt", "sub/b.txt"]
    assert len(settled_runs(service, f"copy-{jid}", count=1)) == 1  # the repeat created nothing

    # plugin: a container named after the jid, created by the plugin flow run
    answer = client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir))
    assert answer == {"data": {}, "compute": {
        "jid": jid, "image": BUSYBOX,
        "cmd": f"sh -c '{COPY_SCRIPT}' sh --dir /share/incoming /share/incoming /share/outgoing",
        "status": "notStarted", "message": "created", "timestamp": "0001-01-01T00:00:00Z", "logs": ""}}
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert plugin["message"] == "exited"
    assert plugin["logs"] == "start\ndone\n"

    container = docker_client.api.inspect_container(jid)
    binds = sorted(container["HostConfig"]["Binds"])
    assert binds == sorted([f"{store}/key-{jid}/incoming:/share/incoming:ro",
                            f"{store}/{output_dir}:/share/outgoing:rw"])
    assert container["HostConfig"]["NanoCpus"] == 10**9
    assert container["HostConfig"]["Memory"] == 200 * 2**20  # a real limit
    assert container["HostConfig"]["NetworkMode"] == "none"
    assert container["Config"]["Env"] == ["A=1", "B=x=y"]
    labels = container["Config"]["Labels"]
    assert labels["org.chrisproject.job_type"] == "plugin"
    assert labels["org.test.suite"] == "prefect-pfcon"

    out = store / output_dir
    assert (out / "new.txt").read_text() == "new\n"
    assert (out / "home_bob_uploads_x" / "x.txt").exists()

    # the flow run in Prefect: named after the jid, tagged, completed, with the plugin's logs
    deadline = time.monotonic() + 15  # the container exits just before its run completes
    while (run := settled_runs(service, f"plugin-{jid}")[0])["state_type"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert run["state_type"] == "COMPLETED"
    assert len(settled_runs(service, f"plugin-{jid}", count=1)) == 1
    assert {f"jid:{jid}", "step:plugin"} <= set(run["tags"])
    deadline = time.monotonic() + 15  # Prefect ships logs in batches
    while "done" not in prefect_log_messages(service, run["id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {"start", "done"} <= set(prefect_log_messages(service, run["id"]))

    # outputs: a plugin-written .chrislink is deleted and not listed
    (out / "evil.chrislink").write_text("home/bob")
    listing = client.get_plugin_job_json_data(jid, output_dir)
    assert listing["job_output_path"] == output_dir
    assert sorted(listing["rel_file_paths"]) == sorted(
        ["new.txt", "a.txt", "sub/b.txt", "home_bob_uploads_x/x.txt", "sub/SHARED_data/s1.txt"])
    top_level = [path for path in listing["rel_file_paths"] if "/" not in path]
    assert listing["rel_file_paths"][: len(top_level)] == top_level  # a dir's files before its subdirs
    assert not (out / "evil.chrislink").exists()

    upload = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert upload == {"compute": {"jid": jid, "image": "", "cmd": "", "status": "finishedSuccessfully",
                                  "message": "uploadSkipped", "timestamp": "", "logs": ""}}

    # delete: removes the key dir, never the output dir
    client.submit_job(JobType.DELETE, jid, {})
    delete = wait_status(client, JobType.DELETE, jid)
    assert delete["status"] == "finishedSuccessfully", delete
    assert not (store / f"key-{jid}").exists()
    assert (out / "new.txt").exists()
    again = client.submit_job(JobType.DELETE, jid, {})
    assert again["compute"]["message"] == "deleteSkipped"

    for job_type in (JobType.COPY, JobType.PLUGIN, JobType.UPLOAD, JobType.DELETE):
        client.delete_job(job_type, jid)  # raises unless 204
    with pytest.raises(PfconRequestException) as missing:
        client.get_job_status(JobType.PLUGIN, jid)
    assert missing.value.code == 404
    assert not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^/{jid}$"})
    assert (out / "new.txt").exists()  # DELETE never touches data


def test_simpledsapp_plugin(fslink_service: Service):
    """The Python image playing fnndsc/pl-simpledsapp, as pfconclient's own integration test."""
    service, store = fslink_service, fslink_service.store_base
    client = service.client()
    jid, output_dir = new_jid(), f"home/carol/feeds/out-{uuid.uuid4().hex[:6]}"
    inputs = store / "home/carol/uploads"
    (inputs / "deep").mkdir(parents=True, exist_ok=True)
    (inputs / "one.txt").write_text("1")
    (inputs / "deep" / "two.txt").write_text("2")
    assert copy_inputs(service, jid, output_dir, ["home/carol/uploads"])["status"] == "finishedSuccessfully"
    client.submit_job(JobType.PLUGIN, jid, {
        "entrypoint": ["simpledsapp"], "args": ["--prefix", "le"], "auid": "cube",
        "number_of_workers": 1, "cpu_limit": 1000, "memory_limit": 200, "gpu_limit": 0,
        "image": "fnndsc/pl-simpledsapp", "type": "ds",
        "input_dirs": ["home/carol/uploads"], "output_dir": output_dir,
    })
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    listing = client.get_plugin_job_json_data(jid, output_dir)
    assert sorted(listing["rel_file_paths"]) == ["deep/letwo.txt", "leone.txt"]
    assert (store / output_dir / "leone.txt").read_text() == "1"
