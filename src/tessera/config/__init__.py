"""Configuration: YAML with line provenance, layering, overrides and pydantic validation."""

from tessera.config.errors import ConfigError, Problem
from tessera.config.layers import Layer, Provenance, merge_layers, parse_override
from tessera.config.project import Project, ProjectConfig, find_project, load_project
from tessera.config.spec import PipelineSpec, StageSpec, load_pipeline_spec
from tessera.config.yaml_io import YamlDocument, load_yaml

__all__ = [
    "ConfigError",
    "Layer",
    "PipelineSpec",
    "Problem",
    "Project",
    "ProjectConfig",
    "Provenance",
    "StageSpec",
    "YamlDocument",
    "find_project",
    "load_pipeline_spec",
    "load_project",
    "load_yaml",
    "merge_layers",
    "parse_override",
]
