"""Walking from a table version back to the raw files and commits it came from."""

from __future__ import annotations

from typing import Any

from tessera.data.metadata import MetadataStore


def lineage(
    meta: MetadataStore, fingerprint: str, *, stage: str | None = None, max_depth: int = 500
) -> dict[str, Any]:
    """The tree of stages, table versions and raw files that produced ``fingerprint``.

    Each node: ``{"version", "stage", "output", "uses", "run", "commit", "dirty", "config",
    "code_hash", "rows", "columns", "inputs": [nodes], "files": [{"path", "hash"}]}``; a version
    no run produced is a node with only ``version`` (``"unknown": True``). Shared ancestors are
    expanded once; later occurrences are marked ``"seen": True``. ``stage`` names the stage
    whose output ``fingerprint`` is, when several stages produced the same version.
    """
    seen: set[tuple[str, str]] = set()
    producers = meta.ancestry(fingerprint)

    def pick(fp: str, name: str | None) -> Any:
        if name is not None:
            return producers.get((name, fp))
        candidates = [rec for (_, v), rec in producers.items() if v == fp]
        # Several stages made this version: start from the one that ran last, the most
        # downstream of them; the walk reaches the others through its inputs.
        return max(candidates, key=lambda r: r.started or 0.0, default=None)

    def node(fp: str, depth: int, name: str | None) -> dict[str, Any]:
        record = pick(fp, name)
        if record is None:
            return {"version": fp, "unknown": True, **({"stage": name} if name else {})}
        output = next((name for name, v in (record.outputs or {}).items() if v == fp), None)
        shape = (record.shapes or {}).get(output) or [None, None]
        item: dict[str, Any] = {
            "version": fp,
            "stage": record.stage,
            "output": output,
            "uses": record.uses,
            "run": record.run_id,
            "status": record.status,
            "commit": record.run.get("git_commit"),
            "dirty": record.run.get("git_dirty"),
            "config": record.config,
            "code_hash": record.code_hash,
            "rows": shape[0],
            "columns": shape[1],
            "files": [{"path": p, "hash": h} for p, h in (record.deps or {}).items()],
            "inputs": [],
        }
        if (record.stage, fp) in seen:
            return {**item, "seen": True, "files": [], "inputs": []}
        seen.add((record.stage, fp))
        if depth < max_depth:
            item["inputs"] = [
                node(in_fp, depth + 1, str(ref).partition(".")[0])
                for ref, in_fp in (record.inputs or [])
            ]
        return item

    return node(fingerprint, 0, stage)


def render(tree: dict[str, Any]) -> str:
    """The lineage tree as indented text."""
    lines: list[str] = []

    def label(n: dict[str, Any]) -> str:
        if n.get("unknown"):
            who = f"{n['stage']} " if n.get("stage") else ""
            return f"{who}{n['version'][:12]} (no recorded run produced this version here)"
        name = n["stage"] if n.get("output") in (None, "out") else f"{n['stage']}.{n['output']}"
        shape = f", {n['rows']:,} x {n['columns']}" if n.get("rows") is not None else ""
        commit = (n.get("commit") or "")[:10]
        commit = f", commit {commit}{'+dirty' if n.get('dirty') else ''}" if commit else ""
        more = " (see above)" if n.get("seen") else ""
        return f"{name} {n['version'][:12]} [{n['uses']}{shape}] run {n['run']}{commit}{more}"

    def walk(n: dict[str, Any], prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        lines.append(prefix + branch + label(n))
        child_prefix = prefix if root else prefix + ("    " if last else "│   ")
        children = [("file", f) for f in n.get("files", [])] + [
            ("node", c) for c in n.get("inputs", [])
        ]
        for i, (kind, child) in enumerate(children):
            is_last = i == len(children) - 1
            if kind == "file":
                lines.append(
                    child_prefix
                    + ("└── " if is_last else "├── ")
                    + f"file {child['path']} {child['hash'][:12]}"
                )
            else:
                walk(child, child_prefix, is_last, False)

    walk(tree, "", True, True)
    return "\n".join(lines)
