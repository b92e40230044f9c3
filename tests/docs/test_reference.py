"""The generated reference pages are current, and every catalogue example is a valid stage."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from tessera.pipeline.registry import discover

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["configuration.md", "transformations.md", "cli.md"])
def test_reference_pages_are_up_to_date(page: str) -> None:
    built = _generator().PAGES[page]().rstrip() + "\n"
    assert (DOCS / page).read_text() == built, f"docs/{page} is stale: run `make docs`"


def test_every_builtin_example_is_a_valid_stage() -> None:
    registry = discover(None)
    checked = 0
    for t in registry.transformations.values():
        blocks = re.findall(r"```yaml\n(.*?)```", t.doc, re.S)
        assert blocks, f"{t.name} has no YAML example in its docstring"
        for block in blocks:
            data = yaml.safe_load(block)
            stages = data.get("stages", data) if isinstance(data, dict) else {}
            for stage in stages.values():
                if stage.get("uses") != t.name:
                    continue
                params = stage.get("with", {})
                t.config_model.model_validate(params)
                n_inputs = len(stage.get("inputs", []))
                assert t.accepts(n_inputs), f"{t.name} example has {n_inputs} inputs"
                checked += 1
    assert checked >= len(registry.transformations)
