"""The shared helpers: column checks and their messages."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.transforms._common import preview, require_absent, require_columns, require_numeric


def test_require_columns_passes_when_present(people: pd.DataFrame) -> None:
    require_columns(people, ["name", "age"])


def test_missing_column_message_suggests_and_lists(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError) as exc:
        require_columns(people, ["agee"])
    assert str(exc.value) == (
        "column 'agee' not found in the input; did you mean 'age'? (columns: name, age, income)"
    )


def test_missing_column_without_close_match(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"^column 'zzz' not found in the input \(columns:"):
        require_columns(people, ["zzz"])


def test_several_missing_columns(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError) as exc:
        require_columns(people, ["nme", "zzz"], what="the left input")
    assert str(exc.value).startswith(
        "columns 'nme', 'zzz' not found in the left input; did you mean 'name' for 'nme'?"
    )


def test_preview_elides_long_lists() -> None:
    assert preview([f"c{i}" for i in range(25)], limit=3) == "c0, c1, c2, ... (25 in all)"


def test_require_absent(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="output column 'age' already exists in the input; x"):
        require_absent(people, ["age", "new"], "x")


def test_require_numeric(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'name' must be numeric"):
        require_numeric(people, ["age", "name"])


def test_every_config_rejects_empty_and_repeated_names() -> None:
    from pydantic import ValidationError

    from tessera.transforms.columns import CastColumns, RenameColumns, SelectColumns
    from tessera.transforms.groups import GroupAggregate
    from tessera.transforms.windows import LagColumns

    with pytest.raises(ValidationError, match="names must not be empty"):
        SelectColumns(columns=["a", ""])
    with pytest.raises(ValidationError, match="duplicates: 'a'"):
        SelectColumns(columns=["a", "b", "a"])
    with pytest.raises(ValidationError, match="column names must not be empty"):
        CastColumns.model_validate({"dtypes": {"": "int64"}})
    with pytest.raises(ValidationError, match="new column names must not be empty"):
        RenameColumns(mapping={"a": ""})
    with pytest.raises(ValidationError, match="duplicates: 'sum'"):
        GroupAggregate.model_validate({"by": ["k"], "aggregations": {"v": ["sum", "sum"]}})
    with pytest.raises(ValidationError, match="no aggregates given for 'v'"):
        GroupAggregate.model_validate({"by": ["k"], "aggregations": {"v": []}})
    with pytest.raises(ValidationError, match="String should have at least 1 character"):
        LagColumns(columns=["a"], order_by="")
