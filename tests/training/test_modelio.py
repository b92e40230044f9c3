"""The model table: reproducible skops bytes, sha256 checked, only reviewed types loaded."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from tessera.training import (
    TRUSTED_TYPES,
    ModelError,
    ModelIntegrityError,
    UntrustedModelError,
    load_model,
)
from tessera.training.modelio import COLUMNS, dumps, model_table


class Sneaky(ClassifierMixin, BaseEstimator):
    """A classifier whose type nobody reviewed."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def xy() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    return X, (X["a"] > 0).to_numpy().astype(int)


def table_for(pipeline, **overrides) -> pa.Table:
    args = dict(
        task="classification",
        target="y",
        estimator="x.Y",
        features=["a", "b"],
        classes=[0, 1],
        params={},
        metrics=["accuracy"],
        seed=0,
        train_rows=50,
    )
    return model_table(pipeline, **{**args, **overrides})


def with_bytes(table: pa.Table, data: bytes, sha: str | None = None) -> pa.Table:
    row = table.to_pylist()[0]
    row["bytes"] = data
    if sha is not None:
        row["sha256"] = sha
    return pa.Table.from_pylist([row], schema=table.schema)


def test_the_model_table_layout() -> None:
    X, y = xy()
    table = table_for(Pipeline([("model", LogisticRegression())]).fit(X, y))
    assert tuple(table.column_names) == COLUMNS
    assert table.schema.field("bytes").type == pa.binary()
    row = table.to_pylist()[0]
    assert row["format"] == "skops"
    assert row["sha256"] == hashlib.sha256(row["bytes"]).hexdigest()
    assert set(json.loads(row["versions"])) >= {"python", "scikit-learn", "skops", "numpy"}
    # No pickle anywhere: a zip of JSON and .npy arrays.
    with zipfile.ZipFile(io.BytesIO(row["bytes"])) as z:
        assert all(n == "schema.json" or n.endswith(".npy") for n in z.namelist())


def test_load_model_accepts_table_frame_row_and_mapping() -> None:
    X, y = xy()
    table = table_for(Pipeline([("model", LogisticRegression())]).fit(X, y))
    frame = table.to_pandas()
    for form in (table, frame, frame.iloc[0], table.to_pylist()[0]):
        np.testing.assert_array_equal(load_model(form).predict(X), load_model(table).predict(X))


def test_bytes_are_reproducible() -> None:
    X, y = xy()
    a = dumps(Pipeline([("model", LogisticRegression())]).fit(X, y))
    b = dumps(Pipeline([("model", LogisticRegression())]).fit(X, y))
    assert a == b
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        arrays = [n for n in z.namelist() if n != "schema.json"]
    # Renumbered in document order, not named after id() values.
    assert arrays and all(n.removesuffix(".npy").isdigit() and len(n) < 10 for n in arrays)


def test_a_tampered_model_is_refused() -> None:
    X, y = xy()
    table = table_for(Pipeline([("model", LogisticRegression())]).fit(X, y))
    data = bytearray(table["bytes"][0].as_py())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ModelIntegrityError, match="do not match their sha256"):
        load_model(with_bytes(table, bytes(data)))


def test_untrusted_types_are_refused() -> None:
    X, y = xy()
    data = sio.dumps(Pipeline([("model", Sneaky())]).fit(X, y))
    table = table_for(Pipeline([("model", LogisticRegression())]).fit(X, y))
    tampered = with_bytes(table, data, hashlib.sha256(data).hexdigest())
    with pytest.raises(UntrustedModelError, match=r"not trusted: .*test_modelio\.Sneaky"):
        load_model(tampered)
    # ... unless the caller vouches for them.
    [name] = [t for t in sio.get_untrusted_types(data=data) if t.endswith("Sneaky")]
    assert load_model(tampered, trusted=[name]).predict(X).tolist() == [0] * 50


def test_a_model_with_untrusted_types_is_not_saved() -> None:
    X, y = xy()
    with pytest.raises(UntrustedModelError, match=r"cannot be saved safely.*Sneaky"):
        table_for(Pipeline([("model", Sneaky())]).fit(X, y))


def test_lightgbm_needs_the_reviewed_types() -> None:
    import lightgbm

    X, y = xy()
    pipe = Pipeline([("model", lightgbm.LGBMClassifier(n_estimators=3, verbose=-1))]).fit(X, y)
    needed = set(sio.get_untrusted_types(data=dumps(pipe)))
    assert {"lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"} <= needed
    assert needed <= set(TRUSTED_TYPES)
    np.testing.assert_array_equal(load_model(table_for(pipe)).predict(X), pipe.predict(X))


def test_not_a_model_table() -> None:
    with pytest.raises(ModelError, match="missing columns"):
        load_model(pa.table({"a": [1]}))
    X, y = xy()
    table = table_for(Pipeline([("model", LogisticRegression())]).fit(X, y))
    with pytest.raises(ModelError, match="exactly one row, got 2"):
        load_model(pa.concat_tables([table, table]))
    row = table.to_pylist()[0]
    with pytest.raises(ModelError, match="unknown model format 'pickle'"):
        load_model({**row, "format": "pickle"})
    garbage = b"not a zip"
    with pytest.raises(ModelError, match="cannot read the model"):
        load_model({**row, "bytes": garbage, "sha256": hashlib.sha256(garbage).hexdigest()})
