"""ChRIS pipelines: a tree of plugins, each node's outputs the inputs of its children.

A pipeline is CUBE's ``plugin_tree`` with each node's plugin given as the runnable
``PluginSpec`` (pfcon has no plugin registry): CUBE's ``plugin_name``/``plugin_version`` become
``plugin.image`` (and ``entrypoint``, ``type``), its ``plugin_parameter_defaults`` become
``plugin.args``, ``title`` and ``previous_index`` stay as they are.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re

from pydantic import BaseModel, Field, model_validator

from prefect_pfcon.models import PluginSpec

PIPELINE_ID_LENGTH = 12


class PipelineNode(BaseModel):
    """One plugin of a pipeline and the node whose outputs it reads."""

    title: str = Field("", description="The node's label (as CUBE's piping title); not part of the pipeline id.")
    plugin: PluginSpec = Field(description="The plugin the node runs, with its arguments and resources.")
    previous_index: int | None = Field(
        None, description="Index of the node whose outputs this node reads; empty for the root."
    )


class ChrisPipeline(BaseModel):
    """A ChRIS pipeline: nodes listed parents first, exactly one root (no ``previous_index``)."""

    name: str = Field("", description="The pipeline's name; not part of its id.")
    description: str = Field("", description="What the pipeline does; not part of its id.")
    nodes: list[PipelineNode] = Field(min_length=1, description="The plugin tree, parents before children.")

    @model_validator(mode="after")
    def _one_tree(self) -> ChrisPipeline:
        roots = [index for index, node in enumerate(self.nodes) if node.previous_index is None]
        if roots != [0]:
            raise ValueError(f"A pipeline has exactly one root, its first node (no previous_index); roots: {roots}")
        for index, node in enumerate(self.nodes[1:], start=1):
            if not 0 <= node.previous_index < index:  # type: ignore[operator]
                raise ValueError(f"Node {index}'s previous_index {node.previous_index} names no earlier node")
        return self

    def children(self, index: int) -> list[int]:
        """The nodes that read node ``index``'s outputs."""
        return [child for child, node in enumerate(self.nodes) if node.previous_index == index]

    def descendants(self, index: int) -> list[int]:
        """Every node below node ``index``, in order."""
        below: set[int] = set()
        for child, node in enumerate(self.nodes):
            if node.previous_index == index or node.previous_index in below:
                below.add(child)
        return sorted(below)


def pipeline_id(pipeline: ChrisPipeline) -> str:
    """A short hash of the pipeline's components: each node's plugin (image, entrypoint,
    arguments, type, env, resources) and the tree's shape. Name, description and titles
    do not change it."""
    components = [{"plugin": node.plugin.model_dump(mode="json"), "previous_index": node.previous_index}
                  for node in pipeline.nodes]
    canonical = json.dumps(components, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:PIPELINE_ID_LENGTH]


def pipeline_label(pipeline: ChrisPipeline) -> str:
    """The pipeline's name as a path segment, else its id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", pipeline.name).strip("-") or pipeline_id(pipeline)


def plugin_name(plugin: PluginSpec) -> str:
    """The plugin's name: its image's, without registry, repository or tag (``pl-dircopy``)."""
    return plugin.image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]


def node_output_dirs(pipeline: ChrisPipeline, output_dir: str) -> list[str]:
    """Each node's output dir, as CUBE lays out a feed: the root's is
    ``<output_dir>/<plugin>_0/data``, a child's ``<its parent's node dir>/<plugin>_<index>/data``."""
    dirs: list[str] = []
    for index, node in enumerate(pipeline.nodes):
        parent = output_dir if node.previous_index is None else posixpath.dirname(dirs[node.previous_index])
        dirs.append(posixpath.join(parent, f"{plugin_name(node.plugin)}_{index}", "data"))
    return dirs
