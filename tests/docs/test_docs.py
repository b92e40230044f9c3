"""Every example in README.md and docs/*.md runs, in order, as a new user would run it.

Conventions in the Markdown:
- a fenced block whose info string has ``file=PATH`` is written to PATH in the scenario directory;
- a ``console`` block holds ``$ command`` lines, run in a shell with ``.venv/bin`` first on PATH;
  the lines after a command are text its output must contain, in order; ``...`` inside a line
  stands for anything (a run id, a timing) and a line that is only ``...`` is skipped;
  ``# exit N`` after a command says the exit code it must have (default 0);
- ``console skip`` blocks are not run (the Quickstart's ``make`` commands: CI runs ``make test``
  itself, and the README's next block runs ``tessera demo``, which is what ``make demo`` does).
Each Markdown file is one scenario in a fresh directory.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


@dataclass
class Step:
    kind: str  # "file" or "command"
    target: str
    body: str = ""
    expect: list[str] = field(default_factory=list)
    code: int = 0


def steps_of(text: str) -> list[Step]:
    steps: list[Step] = []
    for lang, info, body in FENCE.findall(text):
        words = info.split()
        target = next((w.split("=", 1)[1] for w in words if w.startswith("file=")), None)
        if target:
            steps.append(Step("file", target, body))
        elif lang == "console" and "skip" not in words:
            current: Step | None = None
            for line in body.splitlines():
                if line.startswith("$ "):
                    command = line[2:]
                    code = 0
                    m = re.search(r"\s+#\s*exit\s+(\d+)\s*$", command)
                    if m:
                        code, command = int(m.group(1)), command[: m.start()]
                    current = Step("command", command.strip(), code=code)
                    steps.append(current)
                elif current is not None and line.strip() and line.strip() != "...":
                    current.expect.append(" ".join(line.split()))
    return steps


def documents_with_examples() -> list[Path]:
    return [d for d in DOCS if steps_of(d.read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("doc", documents_with_examples(), ids=lambda p: p.name)
def test_documented_examples_run(doc: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["COLUMNS"] = "200"
    cwd = tmp_path
    for step in steps_of(doc.read_text()):
        if step.kind == "file":
            path = cwd / step.target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.body)
            continue
        if step.target.startswith("cd "):
            cwd = (cwd / shlex.split(step.target)[1]).resolve()
            continue
        proc = subprocess.run(
            step.target,
            shell=True,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = " ".join((proc.stdout + proc.stderr).split())
        where = f"{doc.name}: `{step.target}`"
        assert proc.returncode == step.code, f"{where} exited {proc.returncode}:\n{output}"
        assert "Traceback" not in output, f"{where} printed a traceback:\n{output}"
        position = 0
        for expected in step.expect:
            pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
            found = re.compile(pattern).search(output, position)
            assert found, f"{where}: expected {expected!r} (in order) in:\n{output[position:]}"
            position = found.end()


def test_the_harness_reads_blocks() -> None:
    text = "```yaml file=a.yaml\nx: 1\n```\n```console\n$ tessera run  # exit 2\nerror\n...\n```\n"
    steps = steps_of(text)
    assert [(s.kind, s.target, s.code, s.expect) for s in steps] == [
        ("file", "a.yaml", 0, []),
        ("command", "tessera run", 2, ["error"]),
    ]
