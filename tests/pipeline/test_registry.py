"""Transformations are plain typed functions, found by introspection."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from tessera import transformation
from tessera.pipeline.errors import TransformationDefinitionError
from tessera.pipeline.registry import DEFAULT_OUTPUT, discover


class Cfg(BaseModel):
    n: int = 1


def test_signature_is_read_from_annotations() -> None:
    @transformation(outputs=("a", "b"), libraries=("scikit-learn",))
    def split(df: pd.DataFrame, cfg: Cfg) -> dict[str, pd.DataFrame]:
        return {"a": df, "b": df}

    t = split.__tessera_transformation__  # type: ignore[attr-defined]
    assert (t.inputs, t.config_param, t.config_model, t.outputs) == (
        ("df",),
        "cfg",
        Cfg,
        ("a", "b"),
    )
    assert t.libraries == ("scikit-learn",)
    assert split(pd.DataFrame(), Cfg())["a"].empty  # still a plain function


def test_defaults_variadic_and_no_config() -> None:
    @transformation
    def concat(*frames: pd.DataFrame) -> pd.DataFrame:
        return pd.concat(frames)

    t = concat.__tessera_transformation__  # type: ignore[attr-defined]
    assert t.variadic == "frames" and t.outputs == (DEFAULT_OUTPUT,) and t.config_param is None
    assert t.accepts(3) and t.accepts(1) and not t.accepts(0)
    assert t.arity() == "at least 1"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(df, a: Cfg, b: Cfg): ...", "two config parameters"),
        ("def f(df, **kw): ...", r"cannot take \*\*kw"),
        ("def f(df, *, k=1): ...", "keyword-only parameter 'k'"),
        ("def f(df, n: int = 3): ...", "parameter 'n' has a default"),
    ],
)
def test_bad_signatures_fail_at_definition(source: str, message: str) -> None:
    namespace = {"Cfg": Cfg}
    exec(source, namespace)
    with pytest.raises(TransformationDefinitionError, match=message):
        transformation(namespace["f"])


def test_bad_outputs() -> None:
    with pytest.raises(TransformationDefinitionError, match="distinct identifiers"):
        transformation(outputs=("a", "a"))(lambda df: df)


def test_project_and_entry_point_discovery(tmp_path: Path, monkeypatch) -> None:
    # An installed package exposing transformations through the entry point group.
    site = tmp_path / "site"
    (site / "acme_tx").mkdir(parents=True)
    (site / "acme_tx" / "__init__.py").write_text(
        textwrap.dedent(
            """
            import pandas as pd
            from tessera import transformation

            @transformation
            def acme_double(df: pd.DataFrame) -> pd.DataFrame:
                return df * 2
            """
        )
    )
    dist = site / "acme_tx-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tx\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tessera.transformations]\nacme = acme_tx\n")
    monkeypatch.syspath_prepend(str(site))
    # The project's own file: one file, nothing else to edit.
    project = tmp_path / "proj"
    (project / "transforms").mkdir(parents=True)
    (project / "transforms" / "mine.py").write_text(
        "import pandas as pd\nfrom tessera import transformation\n\n"
        "@transformation\ndef mine(df: pd.DataFrame) -> pd.DataFrame:\n    return df\n"
    )
    registry = discover(project)
    assert {"acme_double", "mine", "read_table"} <= set(registry.transformations)
    assert registry.transformations["mine"].origin.endswith("transforms/mine.py:4")
    sys.modules.pop("acme_tx", None)


def test_config_may_come_first_and_be_optional() -> None:
    @transformation
    def first(cfg: Cfg | None, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(n=cfg.n if cfg else 0)

    t = first.__tessera_transformation__  # type: ignore[attr-defined]
    assert t.inputs == ("df",) and t.config_model is Cfg
    out = t.call([pd.DataFrame({"x": [1]})], Cfg(n=5))
    assert out[DEFAULT_OUTPUT]["n"].tolist() == [5]


def test_yaml_12_booleans() -> None:
    from tessera.config.yaml_io import parse_yaml

    data = parse_yaml("on: [id]\nflag: yes\nreal: true\noff_: False").data
    assert data == {"on": ["id"], "flag": "yes", "real": True, "off_": False}
