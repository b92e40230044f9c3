"""Request bodies to validated tables: every format, field-level errors, CSV, limits."""

from __future__ import annotations

import orjson
import pytest

from tessera.serving.inputs import (
    InputError,
    InputSchema,
    MalformedInput,
    TooLarge,
    csv_frame,
    mlflow_frame,
    native_frame,
    parse_json,
)

SCHEMA = InputSchema.from_signature(
    orjson.dumps(
        [
            {"name": "tenure", "type": "long"},
            {"name": "charges", "type": "double"},
            {"name": "plan", "type": "string"},
            {"name": "active", "type": "boolean"},
        ]
    ).decode()
)
ROWS = [
    {"tenure": 3, "charges": 20.5, "plan": "basic", "active": True},
    {"tenure": 12, "charges": 99.0, "plan": "pro", "active": False},
]
COLUMNS = ["tenure", "charges", "plan", "active"]
DATA = [[r[c] for c in COLUMNS] for r in ROWS]


def _check(frame) -> None:
    assert list(frame.columns) == COLUMNS
    assert str(frame["tenure"].dtype) == "int64"
    assert str(frame["charges"].dtype) == "float64"
    assert frame["plan"].tolist() == ["basic", "pro"]
    assert frame["active"].tolist() == [True, False]
    assert frame["tenure"].tolist() == [3, 12]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": ROWS},
        {"columns": COLUMNS, "data": DATA},
        {"columns": COLUMNS[::-1], "data": [row[::-1] for row in DATA], "key": "user-1"},
    ],
)
def test_native_formats(body) -> None:
    _check(native_frame(parse_json(orjson.dumps(body)), SCHEMA, 100))


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": COLUMNS, "data": DATA}},
        {"dataframe_split": {"index": [0, 1], "columns": COLUMNS, "data": DATA}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"inputs": ROWS},
        {"inputs": {c: [r[c] for r in ROWS] for c in COLUMNS}},
        {"instances": DATA, "params": {}},
    ],
)
def test_mlflow_formats(body) -> None:
    _check(mlflow_frame(parse_json(orjson.dumps(body)), SCHEMA, 100))


def test_csv() -> None:
    body = b"plan,tenure,charges,active\nbasic,3,20.5,True\npro,12,99,False\n"
    _check(csv_frame(body, SCHEMA, 100))


def test_every_offending_field_is_named() -> None:
    rows = [dict(r) for r in ROWS * 3]
    rows[1]["tenure"] = "abc"
    rows[3]["tenure"] = 2.5
    rows[4]["charges"] = "much"
    rows[5]["plan"] = 7
    rows[2]["active"] = "yes"
    for r in rows:
        r["extra"] = 1
    with pytest.raises(InputError) as caught:
        native_frame(
            {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in rows]}, SCHEMA, 100
        )
    found = {(p["field"], p["problem"]) for p in caught.value.problems}
    assert found == {
        ("data[1].tenure", "expected integer (long), got 'abc'"),
        ("data[3].tenure", "expected integer (long), got 2.5"),
        ("data[4].charges", "expected number (double), got 'much'"),
        ("data[5].plan", "expected string (string), got 7"),
        ("data[2].active", "expected boolean (boolean), got 'yes'"),
    }
    assert caught.value.status == 422
    assert caught.value.to_dict()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_missing_and_unexpected_columns() -> None:
    rows = [{"tenure": 1, "charges": None, "colour": "red"}]
    with pytest.raises(InputError) as caught:
        native_frame({"inputs": rows}, SCHEMA, 100)
    assert {(p["field"], p["problem"]) for p in caught.value.problems} == {
        ("plan", "missing column"),
        ("active", "missing column"),
        ("colour", "unexpected column"),
    }


def test_duplicate_columns_are_named() -> None:
    body = {"columns": [*COLUMNS, "tenure"], "data": [[*DATA[0], 4]]}
    with pytest.raises(InputError) as caught:
        native_frame(body, SCHEMA, 100)
    assert caught.value.problems == [{"field": "tenure", "problem": "2 columns of this name"}]


def test_numbers_beyond_their_types_range_are_named() -> None:
    """Integers too large for a double or an int64 are refused, not converted wrongly."""
    rows = [
        dict(ROWS[0], charges=10**400),
        dict(ROWS[1], tenure=2**63),
        dict(ROWS[1], tenure=-(2**63)),  # the smallest int64: fine
    ]
    with pytest.raises(InputError) as caught:
        native_frame({"inputs": rows}, SCHEMA, 100)
    assert sorted(p["field"] for p in caught.value.problems) == [
        "inputs[0].charges",
        "inputs[1].tenure",
    ]
    assert native_frame({"inputs": rows[2:]}, SCHEMA, 100)["tenure"].tolist() == [-(2**63)]


def test_json_nested_too_deeply_is_malformed() -> None:
    with pytest.raises(MalformedInput, match="nested too deeply"):
        parse_json(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_nulls_are_missing_numbers_integers_included() -> None:
    """A missing integer is NaN in a float column (what the model saw in training), while a
    missing string or boolean is still refused."""
    rows = [dict(ROWS[0], charges=None), dict(ROWS[1], tenure=None)]
    frame = native_frame({"inputs": rows}, SCHEMA, 100)
    assert frame["charges"].isna().tolist() == [True, False]
    assert str(frame["tenure"].dtype) == "float64"
    assert frame["tenure"].isna().tolist() == [False, True]
    assert str(native_frame({"inputs": ROWS}, SCHEMA, 100)["tenure"].dtype) == "int64"
    text = csv_frame(b"tenure,charges,plan,active\n,1.5,x,true\n", SCHEMA, 10)
    assert text["tenure"].isna().all()
    with pytest.raises(InputError) as caught:
        native_frame({"inputs": [dict(ROWS[0], active=None)]}, SCHEMA, 100)
    assert [p["field"] for p in caught.value.problems] == ["inputs[0].active"]


def test_csv_bad_values_and_malformed_bodies() -> None:
    with pytest.raises(InputError) as caught:
        csv_frame(b"tenure,charges,plan,active\nx,1,a,True\n2,y,b,False\n", SCHEMA, 100)
    assert [p["field"] for p in caught.value.problems] == ["rows[0].tenure", "rows[1].charges"]
    with pytest.raises(MalformedInput):
        csv_frame(b"", SCHEMA, 100)
    with pytest.raises(MalformedInput):
        parse_json(b'{"inputs": [')


def test_shapes_that_do_not_fit() -> None:
    with pytest.raises(InputError) as caught:
        mlflow_frame({"dataframe_split": {"columns": COLUMNS, "data": [[1, 2]]}}, SCHEMA, 100)
    assert caught.value.problems[0]["field"] == "dataframe_split.data[0]"
    with pytest.raises(InputError):
        mlflow_frame({"dataframe_records": ROWS, "instances": ROWS}, SCHEMA, 100)
    with pytest.raises(InputError):
        native_frame({"rows": ROWS}, SCHEMA, 100)
    with pytest.raises(InputError) as caught:
        native_frame({"inputs": [ROWS[0], 5]}, SCHEMA, 100)
    assert caught.value.problems == [{"field": "inputs[1]", "problem": "expected an object, got 5"}]


def test_row_limit() -> None:
    for parse, body in [
        (native_frame, {"inputs": ROWS * 3}),
        (mlflow_frame, {"dataframe_split": {"columns": COLUMNS, "data": DATA * 3}}),
        (mlflow_frame, {"inputs": {c: [r[c] for r in ROWS * 3] for c in COLUMNS}}),
    ]:
        with pytest.raises(TooLarge) as caught:
            parse(body, SCHEMA, 5)
        assert caught.value.status == 413
    with pytest.raises(TooLarge):
        csv_frame(b"tenure,charges,plan,active\n" + b"1,2,a,True\n" * 6, SCHEMA, 5)
    assert len(native_frame({"inputs": ROWS * 2}, SCHEMA, 4)) == 4


def test_nan_written_by_mlflow_clients_is_a_missing_number() -> None:
    """Python's json (MLflow's clients, MLflow's input_example.json) writes NaN, which strict
    JSON parsers such as orjson refuse."""
    body = parse_json(
        b'{"dataframe_split": {"columns": ["tenure", "charges", "plan", "active"], '
        b'"data": [[3, NaN, "basic", true]]}}'
    )
    frame = mlflow_frame(body, SCHEMA, 100)
    assert frame["charges"].isna().all() and frame["tenure"].tolist() == [3]
    with pytest.raises(MalformedInput):
        parse_json(b'{"inputs": NaX}')


def test_datetimes_are_parsed_and_bad_ones_named() -> None:
    schema = InputSchema.from_signature([{"name": "at", "type": "datetime"}])
    frame = native_frame(
        {"inputs": [{"at": "2026-11-22T10:00:00"}, {"at": "2026-11-23"}, {"at": None}]},
        schema,
        10,
    )
    assert str(frame["at"].dtype).startswith("datetime64")
    assert frame["at"].iloc[1].day == 23 and frame["at"].isna().iloc[2]
    text = csv_frame(b"at\n2026-11-22 10:00:00\n", schema, 10)
    assert text["at"].iloc[0].hour == 10
    with pytest.raises(InputError) as bad:
        native_frame({"inputs": [{"at": "2026-11-22"}, {"at": "yesterday"}, {"at": 5}]}, schema, 10)
    assert [p["field"] for p in bad.value.problems] == ["inputs[1].at", "inputs[2].at"]
    assert "expected ISO 8601 date-time (datetime), got 'yesterday'" in bad.value.message


@pytest.mark.parametrize(
    "rows",
    [
        ROWS,
        [{"tenure": 1, "charges": None, "plan": "x", "active": True}],  # a missing number
        [{"tenure": 7, "charges": 3, "plan": "", "active": False}],  # an integer as a double
        [{"active": True, "plan": "p", "charges": 1.5, "tenure": 2}],  # keys in another order
    ],
)
def test_the_fast_path_gives_the_general_paths_table(rows) -> None:
    import pandas as pd

    from tessera.serving.inputs import _fast_frame, _records, validate

    fast = _fast_frame(rows, None, None, SCHEMA)
    assert fast is not None
    general = validate(_records(rows, "inputs", SCHEMA, 100), SCHEMA)
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), general.reset_index(drop=True))
    columns = list(reversed(COLUMNS))
    split = _fast_frame(None, columns, [[r[c] for c in columns] for r in rows], SCHEMA)
    assert split is not None
    pd.testing.assert_frame_equal(split, fast)


@pytest.mark.parametrize(
    "rows",
    [
        [{"tenure": 1.0, "charges": 1.0, "plan": "x", "active": True}],  # integral float: general
        [{"tenure": True, "charges": 1.0, "plan": "x", "active": True}],
        [{"tenure": 1, "charges": "1.5", "plan": "x", "active": True}],
        [{"tenure": 1, "charges": 1.5, "plan": None, "active": True}],
        [{"tenure": 1, "charges": 1.5, "plan": "x"}],
        [{"tenure": 2**70, "charges": 1.5, "plan": "x", "active": True}],
        [[1, 1.5, "x", True]],
    ],
)
def test_anything_unusual_leaves_the_fast_path(rows) -> None:
    from tessera.serving.inputs import _fast_frame

    assert _fast_frame(rows, None, None, SCHEMA) is None
