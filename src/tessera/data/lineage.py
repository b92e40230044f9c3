"""Walking from a table version back to the raw files and commits it came from."""

from __future__ import annotations

from typing import Any

from tessera.data.metadata import MetadataStore


def lineage(meta: MetadataStore, fingerprint: str, *, max_depth: int = 500) -> dict[str, Any]:
    """The tree of stages, table versions and raw files that produced ``fingerprint``.

    Each node: ``{"version", "stage", "output", "uses", "run", "commit", "dirty", "config",
    "code_hash", "rows", "columns", "inputs": [nodes], "files": [{"path", "hash"}]}``; a version
    no run produced is a node with only ``version`` (``"unknown": True``). Shared ancestors are
    expanded once; later occurrences are marked ``"seen": True``.
    """
    seen: set[str] = set()
    producers = meta.ancestry(fingerprint)

    def node(fp: str, depth: int) -> dict[str, Any]:
        record = producers.get(fp)
        if record is None:
            return {"version": fp, "unknown": True}
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
        if fp in seen:
            return {**item, "seen": True, "files": [], "inputs": []}
        seen.add(fp)
        if depth < max_depth:
            item["inputs"] = [node(in_fp, depth + 1) for _, in_fp in (record.inputs or [])]
        return item

    return node(fingerprint, 0)


def render(tree: dict[str, Any]) -> str:
    """The lineage tree as indented text."""
    lines: list[str] = []

    def label(n: dict[str, Any]) -> str:
        if n.get("unknown"):
            return f"{n['version'][:12]} (no recorded run produced this version)"
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
