"""Generate the reference pages in docs/ from the code: config models, the registry, the CLI.

Run with ``make docs``. ``tests/docs/test_reference.py`` fails when a page is out of date.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DOCS = Path(__file__).resolve().parent

CONFIG_INTRO = """# Configuration reference

A project is configured by `tessera.yaml` (the project), `pipeline.yaml` (the stages), parameter
files under `params/`, environment overlays under `envs/`, and `-o STAGE.KEY=VALUE` on the command
line. Every file is validated before anything runs; every problem is reported with its file, line,
stage and key path.

## Parameter layers

A stage's parameters are merged from these layers, lowest precedence first. Mappings merge key by
key; any other value (lists included) is replaced whole by a higher layer.

| layer | where | example |
| --- | --- | --- |
| project defaults | `defaults:` in `tessera.yaml`, by transformation name | `defaults: {train_test_split: {seed: 42}}` |
| pipeline | the stage's `with:` mapping | `with: {test_size: 0.2}` |
| params file | `with: params/split.yaml` (instead of a mapping), or `params: params/split.yaml` next to `with:` | `test_size: 0.25` |
| environment overlay | `envs/NAME.yaml`, selected with `--env NAME`: `stages: {STAGE: {...}}` and `defaults: {TRANSFORMATION: {...}}` | `stages: {split: {test_size: 0.3}}` |
| command line | `-o STAGE.KEY=VALUE`, the value read as YAML; nested keys with dots | `-o split.test_size=0.3`, `-o clip.bounds.age.upper=99` |

For example, with a project default, a params file and an environment overlay:

```console
$ tessera init layered
$ cd layered
```

```text file=data/points.csv
x,label
1.0,a
2.0,b
3.0,a
4.0,b
5.0,a
```

```yaml file=tessera.yaml
name: layered
defaults:
  train_test_split: {seed: 7, test_size: 0.2}
```

```yaml file=params/split.yaml
test_size: 0.4
```

```yaml file=envs/quick.yaml
stages:
  split: {test_size: 0.6}
```

```yaml file=pipeline.yaml
stages:
  raw:   {uses: read_table, with: {path: data/points.csv}}
  split: {uses: train_test_split, inputs: [raw], params: params/split.yaml}
```

`tessera dag --json` shows each stage's validated config:

```console
$ tessera dag --json
"test_size": 0.4
"seed": 7
$ tessera dag --json --env quick
"test_size": 0.6
$ tessera run --env quick -o split.seed=11 --json
"status": "success"
$ tessera run -o split.test_size=2  # exit 2
command line stage 'split' key 'test_size': invalid value
```

YAML timestamps are not converted: `2024-01-31` stays a string until the transformation's config
model says the field is a date.

## Inputs

`inputs:` is a list of upstream stages — `clean`, or `split.train` for one output of a stage with
several — passed to the transformation's table parameters in order, or a mapping from parameter
name to stage (`{left: customers, right: orders}`).
"""

TRANSFORMS_INTRO = """# Transformations

A transformation is a plain typed function. Its table parameters are its inputs; the one
parameter annotated with a pydantic model is its config, validated from the stage's parameters.
Tessera finds transformations by introspection: its built-ins, every installed package that
declares a `tessera.transformations` entry point, and every `transforms/*.py` file of the project
(files starting with `_` are helpers: imported on demand, never scanned). Adding one is one file.

```console
$ tessera init sales
$ cd sales
```

```text file=data/sales.csv
store,day,units
a,2024-01-01,5
a,2024-01-02,7
b,2024-01-01,3
b,2024-01-02,4
```

```python file=transforms/previous.py
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tessera import transformation


class Previous(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(description="Columns to look back on.")
    by: str = Field(description="The entity column.")
    periods: int = Field(1, ge=1, description="How many rows back.")


@transformation
def previous_values(df: pd.DataFrame, cfg: Previous) -> pd.DataFrame:
    \"\"\"Earlier values of some columns, per entity.\"\"\"
    shifted = df.groupby(cfg.by)[cfg.columns].shift(cfg.periods)
    return df.assign(**{f"{c}_prev": shifted[c] for c in cfg.columns})
```

```yaml file=pipeline.yaml
stages:
  raw:      {uses: read_table, with: {path: data/sales.csv}}
  previous: {uses: previous_values, inputs: [raw], with: {columns: [units], by: store}}
```

```console
$ tessera run
2 ran, 0 cached
$ tessera transformations previous_values
previous_values: Earlier values of some columns, per entity.
periods (int, default 1): How many rows back.
```

- Several outputs: `@transformation(outputs=("train", "test"))` and return a dict (or a tuple in
  that order); stages then use `split.train`.
- A sink that writes files and returns nothing: `@transformation(outputs=())`.
- Files: type a config field `InputPath` (read: its content joins the cache key) or `OutputPath`
  (written: the stage is stale when the file is missing or was changed).
- Libraries beyond pandas, numpy and pyarrow that decide the result:
  `@transformation(libraries=("scikit-learn",))` adds their versions to the cache key.
- Tables are index-free: a named index becomes columns, an unnamed one is dropped.

The code hash in the cache key covers the function, its config model and every function or class
of the project (or of Tessera) it reaches through its globals, so editing a helper in
`transforms/_helpers.py` re-runs exactly the stages whose transformation calls it.

**Learned statistics do not belong here.** Scalers, encoders, mean or median imputers fitted on a
whole table would leak information from the test split into training. They are part of the
model's preprocessing (fitted on the training split only, saved inside the model), which arrives
with model specs. The built-ins below only use constants from their config.

`tessera transformations` lists what a project can use; `tessera transformations NAME` shows one
with its parameters.

## Built-in catalogue
"""

CLI_INTRO = """# Command-line reference

Every command that reports takes `--json` (machine-readable output on stdout). Exit codes: 0
success, 1 the work failed (a stage), 2 bad usage or configuration. A user's mistake never
prints a traceback.
"""


def _field_type(field: Any) -> str:
    roles = [getattr(m, "role", None) for m in field.metadata]
    if "input" in roles:
        return "InputPath"
    if "output" in roles:
        return "OutputPath"
    return _type_name(field.annotation)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    for junk in ("tessera.pipeline.registry.", "pydantic.main.", "<class '", "'>"):
        text = text.replace(junk, "")
    if "PathRole(role='input')" in text:
        return "InputPath"
    if "PathRole(role='output')" in text:
        return "OutputPath"
    return text


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel) or (
        isinstance(value, list) and value and isinstance(value[0], BaseModel)
    ):
        return "see below"
    return f"`{value!r}`"


def model_table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        type_name = _field_type(field).replace("|", "\\|")
        lines.append(f"| `{field.alias or name}` | `{type_name}` | {_default(field)} | {desc} |")
    return lines


def configuration() -> str:
    from tessera.config.project import ExecutorConfig, ProjectConfig, StoresConfig
    from tessera.config.spec import StageSpec

    out = [CONFIG_INTRO, "## `tessera.yaml`", "", *model_table(ProjectConfig), ""]
    out += ["### `stores:`", "", *model_table(StoresConfig), ""]
    out += ["### `executor:`", "", *model_table(ExecutorConfig), ""]
    out += ["## `pipeline.yaml`", "", "`stages:` maps each stage name to:", ""]
    out += [*model_table(StageSpec), ""]
    out += serving_tables()
    return "\n".join(out)


def serving_tables() -> list[str]:
    """``serving.yaml`` and each of its sections (see docs/serving.md)."""
    from tessera.serving import config as serving

    out = [
        "## `serving.yaml`",
        "",
        "What `tessera serve` serves and how a candidate rolls out ([serving.md](serving.md)).",
        "",
        *model_table(serving.ServingConfig),
        "",
    ]
    sections = [
        ("models:", serving.ServedModel),
        ("rollout:", serving.RolloutConfig),
        ("rollout.canary:", serving.CanaryConfig),
        ("rollout.canary.steps:", serving.CanaryStep),
        ("rollout.ab:", serving.ABConfig),
        ("rollout.shadow:", serving.ShadowConfig),
        ("prediction_log:", serving.PredictionLogConfig),
        ("admin:", serving.AdminConfig),
    ]
    for title, model in sections:
        out += [f"### `{title}`", "", *model_table(model), ""]
    return out


def transformations() -> str:
    from tessera.pipeline.registry import DEFAULT_OUTPUT, discover

    registry = discover(None)
    items = sorted(registry.transformations.values(), key=lambda t: (t.func.__module__, t.name))
    out = [TRANSFORMS_INTRO]
    out += ["| transformation | inputs | outputs | summary |", "| --- | --- | --- | --- |"]
    for t in items:
        outputs = (
            "-"
            if not t.outputs
            else ("table" if t.outputs == (DEFAULT_OUTPUT,) else ", ".join(t.outputs))
        )
        out.append(f"| [`{t.name}`](#{t.name}) | {t.arity()} | {outputs} | {t.summary} |")
    out.append("")
    current = None
    for t in items:
        module = t.func.__module__
        parts = module.split(".")
        group = parts[-1] if module.startswith("tessera.transforms.") else parts[1]
        if group != current:
            current = group
            out += [f"### {group}", ""]
        out += [f"#### {t.name}", ""]
        doc = t.doc.strip()
        body = doc.split("\n", 1)[1].strip() if "\n" in doc else ""
        out += [t.summary, ""]
        if t.inputs or t.variadic:
            names = ", ".join(t.inputs) + (f", *{t.variadic}" if t.variadic else "")
            out += [f"Inputs: {names}.", ""]
        if t.config_param:
            out += [*model_table(t.config_model), ""]
        if body:
            out += [body, ""]
    return "\n".join(out)


def cli() -> str:
    import typer

    from tessera.cli.main import app

    # Typer vendors its own Click; only its public duck-typed API is used here.
    group: Any = typer.main.get_command(app)
    out = [CLI_INTRO]
    ctx = typer.Context(group, info_name="tessera")

    def document(command: Any, name: str, parent: Any) -> None:
        sub = typer.Context(command, info_name=name.split()[-1], parent=parent)
        if hasattr(command, "list_commands"):  # a group: `tessera data ...`
            for child in command.list_commands(sub):
                document(command.get_command(sub, child), f"{name} {child}", sub)
            return
        usage = " ".join(command.collect_usage_pieces(sub))
        out.extend(
            [
                f"## `tessera {name}`",
                "",
                (command.help or "").strip(),
                "",
                "```text",
                f"tessera {name} {usage}".strip(),
                "```",
                "",
            ]
        )
        rows = []
        for param in command.params:
            if param.param_type_name == "argument":
                rows.append((param.name.upper(), param.help or ""))
            elif param.param_type_name == "option" and not param.hidden:
                flags = ", ".join(param.opts + param.secondary_opts)
                rows.append((flags, param.help or ""))
        if rows:
            out.extend(["| argument / option | meaning |", "| --- | --- |"])
            out.extend(f"| `{a}` | {h} |" for a, h in rows)
            out.append("")

    for name in group.list_commands(ctx):
        document(group.get_command(ctx, name), name, ctx)
    return "\n".join(out)


PAGES = {"configuration.md": configuration, "transformations.md": transformations, "cli.md": cli}


def main() -> int:
    for name, build in PAGES.items():
        (DOCS / name).write_text(build().rstrip() + "\n")
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
