"""The model table: a fitted pipeline stored as a one-row table, without pickle.

Tessera stores tables, so ``train`` returns the model as one row (see :data:`COLUMNS`). ``bytes``
holds the whole fitted scikit-learn ``Pipeline`` (preprocessing and estimator) in the skops
format: a zip of a JSON description and ``.npy`` arrays, loaded by constructing only the types
it names — never by unpickling. A LightGBM estimator travels in LightGBM's own text model format
inside that archive (the ``Booster`` state is its model string).

skops' archive is made byte-for-byte reproducible here (:func:`dumps`): it names objects and
array files after Python ``id()`` values and stamps zip entries with the current time, so the
same fitted model would get new bytes, a new fingerprint and a cache miss downstream on every
run. Ids are renumbered in document order and zip times fixed.

Loading (:func:`load_model`) first checks the sha256 recorded next to the bytes, then lists the
types skops does not trust by default and refuses any outside :data:`TRUSTED_TYPES`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera.training.errors import ModelError, ModelIntegrityError, UntrustedModelError

if TYPE_CHECKING:
    import pyarrow as pa

FORMAT = "skops"

#: Types loaded beyond skops' defaults (which cover scikit-learn's estimators and transformers,
#: numpy arrays and Python builtins). Each was reviewed: loading it builds data, never runs
#: code named by the file.
TRUSTED_TYPES: tuple[str, ...] = (
    # numpy: a dtype is rebuilt from its string name.
    "numpy.dtype",
    # plain container (LightGBM keeps its parameters in one).
    "collections.OrderedDict",
    # scikit-learn internals holding fitted arrays (trees, tree predictors, neighbour indexes,
    # optimiser state); rebuilt from arrays through their own __setstate__.
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    # LightGBM: the scikit-learn wrappers, and the Booster, whose state is LightGBM's native
    # text model, parsed by LightGBM's C++ loader.
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)

#: Columns of the model table, in order.
COLUMNS = (
    "format",
    "bytes",
    "sha256",
    "task",
    "target",
    "estimator",
    "features",
    "classes",
    "params",
    "metrics",
    "seed",
    "train_rows",
    "versions",
)
_VERSIONED = ("scikit-learn", "lightgbm", "skops", "numpy", "pandas")


@dataclass(frozen=True)
class ModelInfo:
    """What a model table says about its model (everything but the bytes)."""

    format: str
    sha256: str
    task: str
    target: str
    estimator: str
    features: list[str]
    classes: list[Any]
    params: dict[str, Any]
    metrics: list[str]
    seed: int
    train_rows: int
    versions: dict[str, str]


# --- writing ---------------------------------------------------------------------------------


def dumps(pipeline: Any) -> bytes:
    """The skops serialization of ``pipeline``, reproducible byte for byte."""
    import skops.io as sio

    return canonical(sio.dumps(pipeline))


_ID_FILE = re.compile(r"^(\d+)(\.\w+)$")


def canonical(data: bytes) -> bytes:
    """A skops archive with ``id()``-based names renumbered in order and fixed zip times."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
        entries = {info.filename: (info, z.read(info)) for info in z.infolist()}
    ids: dict[int, int] = {}

    def new_id(old: int) -> int:
        return ids.setdefault(old, len(ids) + 1)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = new_id(value)
                elif key == "file" and isinstance(value, str) and _ID_FILE.match(value):
                    m = _ID_FILE.match(value)
                    assert m is not None
                    out[key] = f"{new_id(int(m.group(1)))}{m.group(2)}"
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    schema = walk(schema)
    files: dict[str, tuple[int, bytes]] = {}
    for name, (info, content) in entries.items():
        if name == "schema.json":
            continue
        m = _ID_FILE.match(name)
        if m is None or int(m.group(1)) not in ids:
            raise ModelError(f"unexpected file '{name}' in the skops archive")
        files[f"{ids[int(m.group(1))]}{m.group(2)}"] = (info.compress_type, content)
    files["schema.json"] = (
        entries["schema.json"][0].compress_type,
        json.dumps(schema, indent=2).encode(),
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(files):
            compress_type, content = files[name]
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compress_type
            info.external_attr = 0o644 << 16
            z.writestr(info, content)
    return out.getvalue()


def untrusted_types(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """Types in the archive that neither skops' defaults, :data:`TRUSTED_TYPES` nor
    ``trusted`` cover."""
    import skops.io as sio

    allowed = {*TRUSTED_TYPES, *trusted}
    return [t for t in sio.get_untrusted_types(data=data) if t not in allowed]


def trusted_types_of(data: bytes) -> list[str]:
    """The types beyond skops' defaults that loading this archive needs trusted (all of them in
    :data:`TRUSTED_TYPES` for a model Tessera saved): the list MLflow records with the model."""
    import skops.io as sio

    return sorted(sio.get_untrusted_types(data=data))


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on (those installed)."""
    import importlib.metadata
    import sys

    versions = {"python": sys.version.split()[0]}
    for dist in _VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def model_table(
    pipeline: Any,
    *,
    task: str,
    target: str,
    estimator: str,
    features: list[str],
    classes: list[Any],
    params: dict[str, Any],
    metrics: list[str],
    seed: int,
    train_rows: int,
) -> pa.Table:
    """The one-row model table for a fitted pipeline.

    Raises:
        UntrustedModelError: the model contains types :func:`load_model` would refuse (checked
            here, so a model that cannot be loaded is never stored).
    """
    import pyarrow as pa

    data = dumps(pipeline)
    bad = untrusted_types(data)
    if bad:
        raise UntrustedModelError(
            f"{estimator} cannot be saved safely: its fitted model contains types outside "
            f"Tessera's reviewed list ({', '.join(bad)}); use another estimator, or add the "
            "types to tessera.training.modelio.TRUSTED_TYPES after reviewing them"
        )

    def text(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=_jsonable)

    row: dict[str, Any] = {
        "format": FORMAT,
        "bytes": data,
        "sha256": hashlib.sha256(data).hexdigest(),
        "task": task,
        "target": target,
        "estimator": estimator,
        "features": text(features),
        "classes": text(classes),
        "params": text(params),
        "metrics": text(metrics),
        "seed": seed,
        "train_rows": train_rows,
        "versions": text(library_versions()),
    }
    types = {"bytes": pa.binary(), "seed": pa.int64(), "train_rows": pa.int64()}
    return pa.table({k: pa.array([v], types.get(k, pa.string())) for k, v in row.items()})


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- reading ---------------------------------------------------------------------------------


def _row(model: Any) -> dict[str, Any]:
    """The single row of a model table given as Arrow table, DataFrame, Series or mapping."""
    if isinstance(model, Mapping):
        row = dict(model)
    elif hasattr(model, "to_pylist"):  # pyarrow.Table
        rows = model.to_pylist()
        if len(rows) != 1:
            raise ModelError(f"a model table has exactly one row, got {len(rows)}")
        row = rows[0]
    elif hasattr(model, "iloc") and hasattr(model, "columns"):  # pandas.DataFrame
        if len(model) != 1:
            raise ModelError(f"a model table has exactly one row, got {len(model)}")
        row = {str(k): v for k, v in model.iloc[0].to_dict().items()}
    elif hasattr(model, "to_dict"):  # pandas.Series
        row = {str(k): v for k, v in model.to_dict().items()}
    else:
        raise ModelError(f"expected a model table (one row), got {type(model).__name__}")
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ModelError(
            f"not a model table (the output of a `train` stage): missing columns {missing}"
        )
    if row["format"] != FORMAT:
        raise ModelError(f"unknown model format {row['format']!r}; expected {FORMAT!r}")
    return row


def model_info(model: Any) -> ModelInfo:
    """What the model table says about its model, without loading the model."""
    row = _row(model)
    return ModelInfo(
        format=str(row["format"]),
        sha256=str(row["sha256"]),
        task=str(row["task"]),
        target=str(row["target"]),
        estimator=str(row["estimator"]),
        features=json.loads(row["features"]),
        classes=json.loads(row["classes"]),
        params=json.loads(row["params"]),
        metrics=json.loads(row["metrics"]),
        seed=int(row["seed"]),
        train_rows=int(row["train_rows"]),
        versions=json.loads(row["versions"]),
    )


def load_model(model: Any, *, trusted: Iterable[str] = ()) -> Any:
    """The fitted scikit-learn pipeline stored in a model table.

    Args:
        model: the output of a ``train`` stage: an Arrow table, a one-row DataFrame, a row
            (Series) or a mapping of its columns.
        trusted: more type names to trust, beyond skops' defaults and :data:`TRUSTED_TYPES`.

    Raises:
        ModelIntegrityError: the bytes do not match the recorded sha256.
        UntrustedModelError: the model contains a type that is not trusted.
        ModelError: not a model table, or the bytes cannot be read.
    """
    import skops.io as sio

    row = _row(model)
    data = row["bytes"]
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelError(f"the model's `bytes` column holds {type(data).__name__}, not bytes")
    data = bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != row["sha256"]:
        raise ModelIntegrityError(
            f"the model's bytes do not match their sha256 (recorded {row['sha256']}, "
            f"computed {digest}): the model was altered or damaged; retrain it"
        )
    try:
        bad = untrusted_types(data, trusted)
    except Exception as exc:
        raise ModelError(f"cannot read the model: {type(exc).__name__}: {exc}") from exc
    if bad:
        raise UntrustedModelError(
            f"the model contains types that are not trusted: {', '.join(bad)}; refusing to load "
            "it (pass trusted=[...] to load_model only after reviewing them)"
        )
    try:
        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise ModelError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc
