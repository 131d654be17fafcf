"""ChRIS pipelines as one flow run, for real: a three-node tree with a branch runs from the
``pfcon-pipeline/pfcon`` deployment on real containers, its outputs nested as CUBE lays out a
feed; a failed node skips its subtree only; reprocessing runs a pipeline per input."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import Service
from prefect_pfcon.pipelines import ChrisPipeline, node_output_dirs, pipeline_id
from test_fslink_lifecycle import BUSYBOX
from test_prefect_native import artifact, run_deployment, wait_run

ROOT = 'cp -r "$1"/. "$2"/ && echo root > "$2"/root.txt'
# a child records what it read (its parent's outputs) and writes its own file, slowly enough
# that siblings visibly overlap
CHILD = 'ls "$1" > "$2"/seen.txt && sleep 3 && echo {name} > "$2"/{name}.txt'
BLOCKS = {"storage_block": "fslink-storage", "compute_block": "fslink-compute"}


def plugin(script: str, *args: str) -> dict:
    return {"image": BUSYBOX, "entrypoint": ["sh", "-c", script, "sh"], "args": list(args), "type": "ds",
            "memory_limit": 200}


def branching(child_b: str = CHILD.format(name="b"), name: str = "branching") -> dict:
    """Root, then two children of the root."""
    return {"name": name, "description": "root and a branch", "nodes": [
        {"title": "root", "plugin": plugin(ROOT)},
        {"title": "a", "plugin": plugin(CHILD.format(name="a")), "previous_index": 0},
        {"title": "b", "plugin": plugin(child_b), "previous_index": 0},
    ]}


def flow_runs_tagged(service: Service, tag: str) -> list[dict]:
    return service.prefect("post", "/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [tag]}}}).json()


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    return fslink_service


def new_input(service: Service) -> tuple[str, str]:
    """A fresh user's upload (one file) and the feed dir its pipeline writes under."""
    home = f"home/pipe-{uuid.uuid4().hex[:6]}"
    (service.store_base / home / "uploads/s1").mkdir(parents=True)
    (service.store_base / home / "uploads/s1/in.txt").write_text("in")
    return f"{home}/uploads/s1", f"{home}/feeds/feed_1"


# ----- the pipeline model ---------------------------------------------------------------------


def test_pipeline_id_depends_on_components_only():
    pipeline = ChrisPipeline.model_validate(branching())
    renamed = ChrisPipeline.model_validate({**branching(name="other"), "description": "changed"})
    retitled = branching()
    retitled["nodes"][1]["title"] = "another title"
    assert pipeline_id(pipeline) == pipeline_id(renamed) == pipeline_id(ChrisPipeline.model_validate(retitled))
    assert len(pipeline_id(pipeline)) == 12
    changed_arg = branching()
    changed_arg["nodes"][2]["plugin"]["args"] = ["--verbose"]
    reshaped = branching()
    reshaped["nodes"][2]["previous_index"] = 1
    more_memory = branching()
    more_memory["nodes"][0]["plugin"]["memory_limit"] = 400
    ids = {pipeline_id(ChrisPipeline.model_validate(p)) for p in (branching(), changed_arg, reshaped, more_memory)}
    assert len(ids) == 4


@pytest.mark.parametrize("previous", [[None, 0, None], [0, 0], [None, 5], [None, 2, 1], [None, -1]])
def test_a_pipeline_is_one_tree(previous):
    nodes = [{"plugin": plugin(ROOT), "previous_index": index} for index in previous]
    with pytest.raises(ValidationError):
        ChrisPipeline.model_validate({"nodes": nodes})


def test_tree_navigation_and_output_layout():
    nodes = [{"plugin": plugin(ROOT), "previous_index": index} for index in (None, 0, 0, 1, 3)]
    pipeline = ChrisPipeline.model_validate({"nodes": nodes})
    assert pipeline.children(0) == [1, 2] and pipeline.descendants(1) == [3, 4] and pipeline.descendants(2) == []
    assert node_output_dirs(pipeline, "home/u/feeds/feed_1") == [
        "home/u/feeds/feed_1/busybox_0/data",
        "home/u/feeds/feed_1/busybox_0/busybox_1/data",
        "home/u/feeds/feed_1/busybox_0/busybox_2/data",
        "home/u/feeds/feed_1/busybox_0/busybox_1/busybox_3/data",
        "home/u/feeds/feed_1/busybox_0/busybox_1/busybox_3/busybox_4/data",
    ]


# ----- pipelines run for real -----------------------------------------------------------------


def test_the_pipeline_deployment_has_a_typed_form(service: Service):
    deployment = service.prefect("get", "/deployments/name/pfcon-pipeline/pfcon").json()
    assert {"pfcon", "pipeline"} <= set(deployment["tags"])
    schema = deployment["parameter_openapi_schema"]
    assert sorted(schema["required"]) == ["input_dirs", "output_dir", "pipeline"]
    node = schema["definitions"]["PipelineNode"]["properties"]
    assert all(field.get("description") for field in node.values()) and "previous_index" in node


def test_a_branching_pipeline_runs_as_one_flow(service: Service):
    input_dir, feed = new_input(service)
    other_input, other_feed = new_input(service)
    run_id = run_deployment(service, "pfcon-pipeline/pfcon", {
        "pipeline": branching(), "input_dirs": [input_dir], "output_dir": feed, **BLOCKS})
    # the same components under another name: the same pipeline
    other_id = run_deployment(service, "pfcon-pipeline/pfcon", {
        "pipeline": {**branching(name="renamed"), "description": "other"}, "input_dirs": [other_input],
        "output_dir": other_feed, **BLOCKS})
    run, other = wait_run(service, run_id), wait_run(service, other_id)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert other["state_type"] == "COMPLETED", other["state"]

    store = service.store_base
    root = store / feed / "busybox_0/data"  # where CUBE would put them
    assert sorted(p.name for p in root.iterdir()) == ["in.txt", "root.txt"]
    assert sorted(p.name for p in root.parent.iterdir()) == ["busybox_1", "busybox_2", "data"]
    assert (root / "root.txt").read_text() == "root\n" and (root / "in.txt").read_text() == "in"
    for index, name in ((1, "a"), (2, "b")):
        child = store / feed / f"busybox_0/busybox_{index}/data"
        assert (child / f"{name}.txt").read_text() == f"{name}\n"
        assert (child / "seen.txt").read_text().split() == ["in.txt", "root.txt"]  # its parent's outputs

    pid = pipeline_id(ChrisPipeline.model_validate(branching()))
    tag = f"pipeline:{pid}"
    assert tag in run["tags"] and tag in other["tags"]
    tagged = {r["name"]: r for r in flow_runs_tagged(service, tag) if r["name"].startswith(f"job-pl-{run_id[:8]}")}
    assert sorted(tagged) == [f"job-pl-{run_id[:8]}-{index}" for index in range(3)]
    assert all(r["parent_task_run_id"] and r["state_type"] == "COMPLETED" for r in tagged.values())
    a, b = (tagged[f"job-pl-{run_id[:8]}-{index}"] for index in (1, 2))
    start_a, end_a, start_b, end_b = (datetime.fromisoformat(r[key]) for r in (a, b)
                                      for key in ("start_time", "end_time"))
    assert start_a < end_b and start_b < end_a  # siblings ran at once
    assert datetime.fromisoformat(tagged[f"job-pl-{run_id[:8]}-0"]["end_time"]) <= min(start_a, start_b)

    rows = json.loads(artifact(service, f"pfcon-pipeline-{pid}")["data"])
    assert {row["jid"].rsplit("-", 1)[0] for row in rows} in ({f"pl-{run_id[:8]}"}, {f"pl-{other_id[:8]}"})
    assert [(row["index"], row["title"], row["status"]) for row in rows] == [
        (0, "root", "done"), (1, "a", "done"), (2, "b", "done")]
    assert all(row["image"] == BUSYBOX and row["seconds"] > 0 for row in rows)
    assert [row["outputs"] for row in rows] == [2, 2, 2]


def test_a_failed_node_fails_its_subtree_only(service: Service):
    input_dir, feed = new_input(service)
    pipeline = branching(child_b="exit 3")
    pipeline["nodes"].append({"title": "below b", "plugin": plugin(CHILD.format(name="c")), "previous_index": 2})
    run_id = run_deployment(service, "pfcon-pipeline/pfcon", {
        "pipeline": pipeline, "input_dirs": [input_dir], "output_dir": feed, **BLOCKS})
    run = wait_run(service, run_id)
    assert run["state_type"] == "FAILED", run["state"]
    assert (service.store_base / feed / "busybox_0/busybox_1/data/a.txt").read_text() == "a\n"
    assert not (service.store_base / feed / "busybox_0/busybox_2/busybox_3").exists()
    pid = pipeline_id(ChrisPipeline.model_validate(pipeline))
    rows = json.loads(artifact(service, f"pfcon-pipeline-{pid}")["data"])
    statuses = [row["status"] for row in rows]
    assert statuses[:2] == ["done", "done"] and statuses[2].startswith("failed") and \
        statuses[3] == "skipped (parent failed)"
    assert f"pipeline:{pid}" in run["tags"]


def test_reprocessing_runs_a_pipeline_per_input(service: Service):
    base = Path(new_input(service)[0]).parent.as_posix()
    (service.store_base / base / "s2").mkdir()
    (service.store_base / base / "s2/in.txt").write_text("in")
    pipeline = branching(name="my pipeline")
    run_id = run_deployment(service, "pfcon-reprocess/pfcon", {
        "pipeline": pipeline, "inputs": {"glob": f"{base}/s[0-9]"}, "output_template": "{input_dir}-{plugin}",
        **BLOCKS})
    run = wait_run(service, run_id, timeout=400)
    assert run["state_type"] == "COMPLETED", run["state"]
    for name in ("s1", "s2"):
        feed = service.store_base / base / f"{name}-my-pipeline"
        assert (feed / "busybox_0/data/root.txt").exists()
        assert (feed / "busybox_0/busybox_2/data/b.txt").read_text() == "b\n"
    summary = json.loads(artifact(service, "pfcon-reprocess-summary")["data"])
    assert sorted((Path(row["input"]).name, row["status"], row["outputs"]) for row in summary) == [
        ("s1", "done", 6), ("s2", "done", 6)]
