#!/usr/bin/env python3
"""Run the model of this bundle: verify it, load it, predict from a file or over HTTP.

Written into the bundle by ``tessera models package``. Needs only the Python standard library
and the pinned packages of ``requirements.txt`` (no MLflow, no Tessera)::

    python serve.py verify                                  # check the files, load the model
    python serve.py predict input.csv [--out preds.csv]     # or input.json (MLflow scoring JSON)
    python serve.py serve [--host 0.0.0.0] [--port 8080]    # HTTP: /health /ready /invocations

Before the model is loaded, every file of ``model/`` is hashed and compared with the sha256
recorded in ``manifest.json``, and the types named by the skops archive are compared with the
reviewed list in ``trusted_types.json``: a missing, altered or unlisted file, or a type outside
the list, stops the script with exit status 2 before anything is deserialized. Other failures
(bad input, a model that cannot predict) exit with status 1.

``POST /invocations`` accepts MLflow's scoring formats (``{"dataframe_split": ...}``,
``{"dataframe_records": ...}``, ``{"instances": ...}``, ``{"inputs": ...}``) as
``application/json``, or a CSV table with a header row as ``text/csv``, and answers
``{"predictions": [...]}`` (binary classifiers add ``"probabilities"``: the probability of
``"positive_class"``). Bad input is answered with a 4xx status and a JSON body
``{"error_code": ..., "message": ...}`` naming the problem.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import signal
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXIT_FAILED = 1
EXIT_REFUSED = 2
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
NUMERIC = ("double", "float", "integer", "long")
DEFAULTS: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 8080,
    "max_batch_rows": 10_000,
    "max_request_bytes": 64 * 1024 * 1024,
}


class Refused(Exception):
    """The bundle failed verification: the model was not loaded."""


class BadInput(Exception):
    """A request or input file the model cannot score; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# --- verification and loading ----------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """A JSON file of the bundle; a missing or unreadable one refuses the bundle."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read {path.name}: {exc}") from exc


def verify_files(bundle: Path, manifest: dict[str, Any]) -> Path:
    """Check every model file against its sha256 in the manifest; the model directory.

    Raises:
        Refused: a listed file is missing or differs, or the directory holds an unlisted file.
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise Refused("manifest.json lists no model files (`files`); cannot verify the model")
    model_dir = (bundle / str(manifest.get("bundle", {}).get("model_dir", "model"))).resolve()
    problems = []
    for rel, expected in sorted(files.items()):
        path = (model_dir / rel).resolve()
        shown = f"{model_dir.name}/{rel}"
        if not path.is_relative_to(model_dir):
            problems.append(f"{shown}: outside the model directory")
        elif not path.is_file():
            problems.append(f"{shown}: missing")
        else:
            actual = sha256_file(path)
            if actual != expected:
                problems.append(f"{shown}: sha256 is {actual}, manifest.json records {expected}")
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if rel not in files:
            problems.append(f"{model_dir.name}/{rel}: not listed in manifest.json")
    if problems:
        raise Refused(
            "the model files do not match manifest.json (altered or damaged bundle); refusing "
            "to load the model:\n  " + "\n  ".join(problems)
        )
    return model_dir


def feature_names(manifest: dict[str, Any]) -> list[str]:
    """The model's input columns, in order (``features``: names, or objects with a name)."""
    features = manifest.get("features")
    if not isinstance(features, list) or not features:
        raise Refused("manifest.json has no `features` list")
    return [str(f["name"]) if isinstance(f, dict) else str(f) for f in features]


def column_types(manifest: dict[str, Any]) -> dict[str, str]:
    """Column name -> MLflow schema type (``double``, ``string``, ...), where known."""
    types: dict[str, str] = {}
    for column in manifest.get("bundle", {}).get("input_schema", []):
        if isinstance(column, dict) and "name" in column and "type" in column:
            types[str(column["name"])] = str(column["type"])
    return types


class Model:
    """The verified, loaded model of a bundle and what it needs to score a table."""

    def __init__(self, bundle: Path) -> None:
        manifest = read_json(bundle / "manifest.json")
        if not isinstance(manifest, dict):
            raise Refused("manifest.json is not a JSON object")
        model_dir = verify_files(bundle, manifest)
        import skops.io as sio  # only now: nothing of the model is read before the hashes match

        trusted = read_json(bundle / "trusted_types.json")
        if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
            raise Refused("trusted_types.json is not a list of type names")
        model_file = str(manifest.get("bundle", {}).get("model_file", "model.skops"))
        path = model_dir / model_file
        if model_file not in manifest["files"]:
            raise Refused(f"{model_dir.name}/{model_file} is not listed in manifest.json")
        try:
            found = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise Refused(f"cannot read {model_dir.name}/{model_file}: {exc}") from exc
        untrusted = sorted(set(found) - set(trusted))
        if untrusted:
            raise Refused(
                f"{model_dir.name}/{model_file} contains types outside trusted_types.json: "
                f"{', '.join(untrusted)}; refusing to load it"
            )
        built = str(manifest.get("bundle", {}).get("python", ""))
        if built and built.split(".")[:2] != [str(v) for v in sys.version_info[:2]]:
            print(
                f"serve.py: warning: the bundle was built with Python {built}, this is "
                f"{sys.version.split()[0]}; its pinned requirements may not fit",
                file=sys.stderr,
            )
        self.pipeline = sio.load(path, trusted=trusted)
        self.manifest = manifest
        self.model_dir = model_dir
        self.features = feature_names(manifest)
        self.types = column_types(manifest)
        self.name = str(manifest.get("name", "model"))
        self.version = str(manifest.get("version", ""))
        classes = getattr(self.pipeline, "classes_", None)
        binary = (
            manifest.get("task") != "regression"
            and hasattr(self.pipeline, "predict_proba")
            and classes is not None
            and len(classes) == 2
        )
        self.positive_class: Any = plain(classes[1]) if binary and classes is not None else None
        self._lock = threading.Lock()

    def prepare(self, frame: Any) -> Any:
        """The model's columns of ``frame``, in order, with values of the declared types.

        Raises:
            BadInput: columns are missing or hold values of the wrong type.
        """
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise BadInput(
                f"missing columns: {', '.join(missing)} (the model needs: "
                f"{', '.join(self.features)})"
            )
        frame = frame[self.features].copy()
        for name in self.features:
            frame[name] = coerce(frame[name], name, self.types.get(name))
        return frame

    def predict(self, frame: Any) -> dict[str, Any]:
        """``{"predictions": [...]}``, plus the positive class's probabilities when binary."""
        if len(frame) == 0:
            out: dict[str, Any] = {"predictions": []}
            if self.positive_class is not None:
                out.update(probabilities=[], positive_class=self.positive_class)
            return out
        frame = self.prepare(frame)
        try:
            with self._lock:  # one prediction at a time: estimators are not all thread-safe
                predictions = self.pipeline.predict(frame)
                proba = None
                if self.positive_class is not None:
                    proba = self.pipeline.predict_proba(frame)[:, 1]
        except (ValueError, TypeError, KeyError) as exc:
            raise BadInput(f"the model cannot score this input: {exc}") from exc
        out = {"predictions": [plain(v) for v in predictions.tolist()]}
        if proba is not None:
            out["probabilities"] = [plain(v) for v in proba.tolist()]
            out["positive_class"] = self.positive_class
        return out


def load(bundle: Path) -> Model:
    """The bundle's model, or exit: status 2 if verification fails, 1 if loading fails."""
    try:
        return Model(bundle)
    except Refused as exc:
        print(f"serve.py: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None
    except Exception as exc:
        print(f"serve.py: cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


# --- input -----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-safe scalar: numpy scalars unwrapped, NaN and infinities as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def coerce(column: Any, name: str, kind: str | None) -> Any:
    """A column converted to its declared MLflow type; values that do not fit are refused."""
    import pandas as pd

    if kind in NUMERIC and not pd.api.types.is_numeric_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise BadInput(
                f"column '{name}' must be numeric ({kind}); row {row} holds {column.iloc[row]!r}"
            )
        return numbers
    if kind == "string" and not pd.api.types.is_string_dtype(column):
        return column.map(lambda v: v if v is None or isinstance(v, str) or _isnan(v) else str(v))
    if kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(column):
        try:
            return pd.to_datetime(column)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"column '{name}' must hold dates: {exc}") from exc
    return column


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def read_csv(text: str, model: Model) -> Any:
    """A table from CSV text with a header row (string columns kept as text)."""
    import pandas as pd

    strings = {c: str for c, kind in model.types.items() if kind == "string"}
    options: dict[str, Any] = {}
    if tuple(int(p) for p in pd.__version__.split(".")[:2]) < (3, 1):
        # Floats parse to exactly the value written (pandas >= 3.1 always does, and deprecates
        # the option).
        options["float_precision"] = "round_trip"
    try:
        return pd.read_csv(io.StringIO(text), dtype=strings, **options)
    except pd.errors.EmptyDataError:
        raise BadInput("the CSV input is empty (a header row is required)", 400) from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadInput(f"cannot parse the CSV input: {exc}", 400) from exc


def frame_from_json(data: Any, model: Model) -> Any:
    """A table from MLflow scoring JSON (or a bare list of records)."""
    import pandas as pd

    if isinstance(data, list):
        return _rows(data, model.features, "the JSON list")
    if not isinstance(data, dict):
        raise BadInput(f"expected a JSON object with one of: {', '.join(FORMATS)}", 400)
    keys = [k for k in FORMATS if k in data]
    if len(keys) != 1:
        raise BadInput(
            f"expected exactly one of {', '.join(FORMATS)} in the JSON object; got keys: "
            f"{', '.join(sorted(map(str, data))) or 'none'}",
            400,
        )
    key = keys[0]
    value = data[key]
    extra = sorted(set(data) - {key, "params"})
    if extra:
        raise BadInput(f"unexpected keys next to {key}: {', '.join(map(str, extra))}", 400)
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
            raise BadInput("dataframe_split must be an object with `columns` and `data`", 400)
        columns, rows = value["columns"], value.get("data", [])
        if not isinstance(rows, list):
            raise BadInput("dataframe_split.data must be a list of rows", 400)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadInput(
                    f"dataframe_split.data[{i}] must be a list of {len(columns)} values "
                    f"(one per column)",
                    400,
                )
        return pd.DataFrame(rows, columns=[str(c) for c in columns])
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise BadInput("dataframe_records must be a list of objects (column: value)", 400)
        return pd.DataFrame(value)
    if isinstance(value, dict):  # columnar: {"column": [values...]} or one row of scalars
        lists = [v for v in value.values() if isinstance(v, list)]
        if not lists:
            return pd.DataFrame([value])
        if len(lists) != len(value) or len({len(v) for v in lists}) != 1:
            raise BadInput(f"{key} as an object must map every column to lists of one length", 400)
        return pd.DataFrame(value)
    if isinstance(value, list):
        return _rows(value, model.features, key)
    raise BadInput(f"{key} must be a list of rows or an object of columns", 400)


def _rows(rows: list[Any], features: list[str], what: str) -> Any:
    """A table from a list of records (objects) or of rows (lists in the model's column order)."""
    import pandas as pd

    if all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(rows)
    if all(isinstance(r, list) for r in rows):
        for i, row in enumerate(rows):
            if len(row) != len(features):
                raise BadInput(
                    f"{what}[{i}] has {len(row)} values; rows given as lists need one value per "
                    f"feature, in order: {', '.join(features)}",
                    400,
                )
        return pd.DataFrame(rows, columns=features)
    raise BadInput(f"{what} must hold only objects (records) or only lists (rows)", 400)


def parse_json(text: str) -> Any:
    """JSON text, or a 400 naming where it is malformed."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"malformed JSON: {exc}", 400) from exc


# --- predict command -------------------------------------------------------------------------


def predict_command(args: argparse.Namespace) -> int:
    """Score a CSV or JSON file; write JSON lines (default) or CSV."""
    source = Path(args.input)
    model = load(HERE)
    try:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {source}: {exc}") from exc
        if source.suffix.lower() == ".csv":
            frame = read_csv(text, model)
        elif source.suffix.lower() == ".json":
            frame = frame_from_json(parse_json(text), model)
        else:
            raise BadInput(f"{source}: expected a .csv or .json file")
        result = model.predict(frame)
    except BadInput as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    fmt = args.format or ("csv" if args.out and args.out.lower().endswith(".csv") else "jsonl")
    columns = ["prediction"] + (["probability"] if "probabilities" in result else [])
    values = [result["predictions"]] + (
        [result["probabilities"]] if "probabilities" in result else []
    )
    rows = list(zip(*values, strict=True))
    out = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    else:
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
    if args.out:
        Path(args.out).write_text(out.getvalue(), encoding="utf-8")
        print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out.getvalue())
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Verify the files, load the model and score its input example."""
    model = load(HERE)
    warm_up(model)
    print(f"ok: {model.name} version {model.version}: files verified, model loaded")
    return 0


def warm_up(model: Model) -> None:
    """Score the model's own input example, if it has one; exit 1 if that fails."""
    example = model.model_dir / "serving_input_example.json"
    if not example.is_file():
        return
    try:
        model.predict(frame_from_json(parse_json(example.read_text(encoding="utf-8")), model))
    except Exception as exc:
        print(f"serve.py: the model cannot score its input example: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


# --- HTTP server -----------------------------------------------------------------------------

ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    411: "LENGTH_REQUIRED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_PARAMETER_VALUE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "NOT_READY",
}


class Server(ThreadingHTTPServer):
    """The HTTP server; requests finish before shutdown completes."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], model: Model, config: dict[str, Any]) -> None:
        super().__init__(address, Handler)
        self.model = model
        self.config = config
        self.ready = True


class Handler(BaseHTTPRequestHandler):
    """``GET /health``, ``GET /ready``, ``GET /metadata``, ``POST /invocations``."""

    server: Server
    server_version = "tessera-bundle/1"
    protocol_version = "HTTP/1.1"
    timeout = 15  # seconds an idle keep-alive connection is held (and can delay shutdown)

    def send_json(self, status: int, body: Any) -> None:
        """Answer with a JSON body (NaN never appears: values go through ``plain``)."""
        data = json.dumps(body, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the HTTP layer (malformed request, unknown method) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        body = {"error_code": ERROR_CODES.get(code, "ERROR"), "message": message or phrase}
        self.send_json(code, body)

    def fail(self, status: int, message: str) -> None:
        self.send_json(status, {"error_code": ERROR_CODES.get(status, "ERROR"), "message": message})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        model = self.server.model
        if path in ("/health", "/ping"):
            self.send_json(200, {"status": "ok"})
        elif path == "/ready":
            if self.server.ready:
                self.send_json(
                    200, {"status": "ready", "model": model.name, "version": model.version}
                )
            else:
                self.fail(503, "shutting down")
        elif path == "/metadata":
            manifest = model.manifest
            keys = ("name", "version", "aliases", "task", "target", "classes", "metrics")
            body = {k: manifest[k] for k in keys if k in manifest}
            self.send_json(200, {**body, "features": model.features})
        else:
            self.fail(404, f"no such endpoint: GET {path} (try /health, /ready, /metadata)")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/invocations":
            self.close_connection = True
            self.fail(404, f"no such endpoint: POST {path} (predictions: POST /invocations)")
            return
        try:
            self.send_json(200, self.invocations())
        except BadInput as exc:
            self.fail(exc.status, str(exc))
        except Exception:
            traceback.print_exc()
            self.fail(500, "internal error while scoring (see the server log)")

    def invocations(self) -> dict[str, Any]:
        """Read, parse and score the request body."""
        config = self.server.config
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise BadInput("a Content-Length header is required", 411)
        if int(length) > config["max_request_bytes"]:
            self.close_connection = True
            raise BadInput(
                f"the request body has {length} bytes; the limit is "
                f"{config['max_request_bytes']} (max_request_bytes in serving.yaml)",
                413,
            )
        body = self.rfile.read(int(length))
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"the request body is not UTF-8: {exc}", 400) from exc
        model = self.server.model
        if ctype.lower() == "application/json":
            frame = frame_from_json(parse_json(text), model)
        elif ctype.lower() in ("text/csv", "application/csv"):
            frame = read_csv(text, model)
        else:
            raise BadInput(
                f"unsupported Content-Type {ctype!r}: send application/json or text/csv", 415
            )
        if len(frame) > config["max_batch_rows"]:
            raise BadInput(
                f"{len(frame)} rows in one request; the limit is {config['max_batch_rows']} "
                "(max_batch_rows in serving.yaml): send smaller batches",
                413,
            )
        return model.predict(frame)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def serve_command(args: argparse.Namespace) -> int:
    """Verify and load the model, score its example, then serve until SIGTERM or Ctrl-C."""
    config = read_config(HERE / "serving.yaml")
    if args.max_batch_rows is not None:
        config["max_batch_rows"] = args.max_batch_rows
    model = load(HERE)
    warm_up(model)
    host = args.host or str(config["host"])
    port = int(config["port"] if args.port is None else args.port)
    try:
        server = Server((host, port), model, config)
    except OSError as exc:
        print(f"serve.py: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return EXIT_FAILED

    def stop(signum: int, frame: Any) -> None:
        server.ready = False  # /ready answers 503 while requests in flight finish
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    print(
        f"serving {model.name} version {model.version} on http://{bound_host!s}:{bound_port} "
        "(POST /invocations)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0


def read_config(path: Path) -> dict[str, Any]:
    """``serving.yaml``: one ``key: value`` per line, values in JSON (which YAML also reads)."""
    config = dict(DEFAULTS)
    if not path.is_file():
        return config
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or line[0].isspace():
            print(
                f"serve.py: {path.name}:{number}: expected `key: value` on one line",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_FAILED)
        value = value.strip()
        try:
            config[key.strip()] = json.loads(value)
        except ValueError:
            value = value.split(" #", 1)[0].strip()  # a trailing comment
            try:
                config[key.strip()] = json.loads(value)
            except ValueError:
                config[key.strip()] = value.strip("\"'")  # a plain YAML string
    for key in ("port", "max_batch_rows", "max_request_bytes"):
        if not isinstance(config[key], int) or config[key] < 0:
            print(f"serve.py: {path.name}: {key} must be a whole number", file=sys.stderr)
            raise SystemExit(EXIT_FAILED)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check the files and load the model")
    verify.set_defaults(run=verify_command)
    predict = commands.add_parser("predict", help="score a CSV or JSON file")
    predict.add_argument("input", help="a .csv file (header row) or .json file (MLflow format)")
    predict.add_argument("--out", help="write here instead of stdout (.csv: CSV)")
    predict.add_argument("--format", choices=["jsonl", "csv"], help="output format")
    predict.set_defaults(run=predict_command)
    serve = commands.add_parser("serve", help="serve predictions over HTTP")
    serve.add_argument("--host", help="address to listen on (default: serving.yaml, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default: serving.yaml, 8080; 0: any)")
    serve.add_argument("--max-batch-rows", type=int, help="rows per request at most")
    serve.set_defaults(run=serve_command)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
