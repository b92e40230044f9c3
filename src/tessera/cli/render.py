"""Text renderings: the DAG (text, Mermaid, DOT) and transformation descriptions."""

from __future__ import annotations

from typing import Any

from tessera.pipeline.model import Pipeline
from tessera.pipeline.registry import DEFAULT_OUTPUT, Transformation


def _edge_label(output: str) -> str:
    return "" if output == DEFAULT_OUTPUT else output


def render_dag(p: Pipeline, fmt: str) -> str:
    """The DAG of ``p`` as ``text``, ``mermaid`` or ``dot``."""
    if fmt == "mermaid":
        lines = ["graph TD"]
        for name in p.order:
            lines.append(f'    {_mid(name)}["{name}<br/><i>{p.stages[name].uses}</i>"]')
        for name in p.order:
            for ref in p.stages[name].inputs:
                label = _edge_label(ref.output)
                arrow = f"-->|{label}|" if label else "-->"
                lines.append(f"    {_mid(ref.stage)} {arrow} {_mid(name)}")
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph pipeline {", "    rankdir=LR;", "    node [shape=box];"]
        for name in p.order:
            lines.append(f'    "{name}" [label="{name}\\n({p.stages[name].uses})"];')
        for name in p.order:
            for ref in p.stages[name].inputs:
                label = _edge_label(ref.output)
                attr = f' [label="{label}"]' if label else ""
                lines.append(f'    "{ref.stage}" -> "{name}"{attr};')
        lines.append("}")
        return "\n".join(lines)
    width = max(len(n) for n in p.order) if p.order else 0
    lines = []
    for name in p.order:
        stage = p.stages[name]
        src = ", ".join(str(r) if _edge_label(r.output) else r.stage for r in stage.inputs)
        arrow = f"  <- {src}" if src else ""
        lines.append(f"{name:<{width}}  ({stage.uses}){arrow}")
    return "\n".join(lines)


def _mid(name: str) -> str:
    return name.replace("-", "_")


def _fields(t: Transformation) -> list[dict[str, Any]]:
    from pydantic_core import to_jsonable_python

    rows = []
    for name, f in t.config_model.model_fields.items():
        ann = f.annotation
        type_name = getattr(ann, "__name__", None) if isinstance(ann, type) else None
        row: dict[str, Any] = {
            "name": f.alias or name,
            "type": type_name or str(ann).replace("typing.", ""),
            "required": f.is_required(),
            "description": f.description or "",
        }
        if not f.is_required():
            row["default"] = to_jsonable_python(
                f.get_default(call_default_factory=True), fallback=repr
            )
        rows.append(row)
    return rows


def _source(t: Transformation) -> str:
    module = getattr(t.func, "__module__", "")
    if module.startswith("tessera."):
        return "builtin"
    return "project" if module.startswith("transforms") else "package"


def transformation_rows(items: list[Transformation]) -> list[dict[str, Any]]:
    """One row per transformation (the ``tessera transformations --json`` list)."""
    return [
        {
            "name": t.name,
            "min_inputs": t.min_inputs(),
            "variadic": t.variadic is not None,
            "outputs": list(t.outputs),
            "summary": t.summary,
            "source": _source(t),
            "origin": t.origin,
        }
        for t in items
    ]


def describe_transformation(t: Transformation) -> dict[str, Any]:
    """Everything about one transformation, with a plain-text rendering under ``text``."""
    fields = _fields(t)
    text = [f"{t.name}: {t.summary}", "", f"inputs: {t.arity()} ({', '.join(t.inputs) or '-'})"]
    text.append(f"outputs: {', '.join(t.outputs) or 'none (writes files)'}")
    text.append(f"defined at: {t.origin}")
    text.append("")
    text.append("parameters:")
    for f in fields:
        req = "required" if f["required"] else f"default {f['default']!r}"
        text.append(f"  {f['name']} ({f['type']}, {req}): {f['description']}")
    if t.doc:
        text += ["", t.doc]
    return {
        "name": t.name,
        "summary": t.summary,
        "inputs": list(t.inputs),
        "variadic": t.variadic is not None,
        "outputs": list(t.outputs),
        "parameters": fields,
        "source": _source(t),
        "doc": t.doc,
        "origin": t.origin,
        "text": "\n".join(text),
    }
