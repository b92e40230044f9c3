"""Every built-in is discoverable, documented and has a fully described config."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

import tessera.transforms
from tessera.pipeline.registry import Transformation, discover


@pytest.fixture(scope="module")
def builtins() -> dict[str, Transformation]:
    return discover(None).transformations


def _models(annotation: object) -> list[type[BaseModel]]:
    """Pydantic models nested in a type annotation (dict[str, Bounds] -> [Bounds])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _undescribed(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(prefix + name)
        for sub in _models(field.annotation):
            missing += _undescribed(sub, f"{prefix}{name}.")
    return missing


def test_at_least_26_builtins(builtins: dict[str, Transformation]) -> None:
    assert len(builtins) >= 26
    assert set(tessera.transforms.__all__) <= set(builtins)


@pytest.mark.parametrize("name", sorted(tessera.transforms.__all__))
def test_documented(name: str, builtins: dict[str, Transformation]) -> None:
    t = builtins[name]
    assert t.summary and t.summary.endswith("."), t.summary
    assert "`" not in t.summary, "summaries are shown as plain text"
    assert "Example:" in t.doc and "```yaml" in t.doc
    assert f"uses: {name}" in t.doc
    assert _undescribed(t.config_model) == []
    assert t.config_model.model_config.get("extra") == "forbid"


def test_shapes(builtins: dict[str, Transformation]) -> None:
    assert builtins["read_table"].inputs == ()
    assert builtins["write_table"].outputs == ()
    assert builtins["join_tables"].inputs == ("left", "right")
    assert builtins["concat_tables"].variadic == "frames"
    assert builtins["train_test_split"].outputs == ("train", "test")
