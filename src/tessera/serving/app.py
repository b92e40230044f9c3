"""The HTTP prediction API of ``tessera serve`` (Starlette, orjson).

Routes: ``GET /health`` (liveness: always 200), ``GET /ready`` (200 once the model is loaded and
has predicted its input example, else 503), ``POST /predict`` (native formats: predictions,
probabilities of binary classifiers, a request id and the model's name and version) and
``POST /invocations`` (MLflow's scoring protocol, answered like ``mlflow models serve``).

The model is loaded in a background thread when the application starts, so ``/health`` answers
at once and ``/ready`` tells load balancers when to send traffic.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tessera.serving.config import ServingConfig
from tessera.serving.inputs import (
    InputError,
    InputSchema,
    TooLarge,
    UnsupportedMediaType,
    csv_frame,
    mlflow_frame,
    native_frame,
    parse_json,
)

ENV_VAR = "TESSERA_SERVE_SPEC"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(content: Any, status: int = 200) -> Response:
    """A JSON response serialised with orjson (numpy arrays and scalars included)."""
    return Response(
        orjson.dumps(content, default=_plain, option=_JSON_OPTIONS),
        status,
        media_type="application/json",
    )


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: object or non-contiguous arrays, other scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _error(exc: InputError) -> Response:
    return json_response(exc.to_dict(), exc.status)


class ServedModel:
    """The model behind the routes: loaded and warmed up in the background."""

    def __init__(self, model_dir: Path, info: dict[str, Any], config: ServingConfig) -> None:
        self.model_dir = model_dir
        self.info = info
        self.config = config
        self.schema = InputSchema.from_model_dir(model_dir)
        self.pipeline: Any = None
        self.binary = False
        self.ready = threading.Event()
        self.failure: str | None = None
        self.identity = {"name": info.get("name"), "version": info.get("version")}

    def load(self) -> None:
        """Load the pipeline (trusted types only) and predict the input example once."""
        from tessera.registry.models import RegistryError, load_directory

        try:
            pipeline = load_directory(self.model_dir, RegistryError)
            classes = getattr(pipeline, "classes_", None)
            self.binary = (
                self.info.get("task") != "regression"
                and hasattr(pipeline, "predict_proba")
                and classes is not None
                and len(classes) == 2
            )
            self.pipeline = pipeline
            example = self.model_dir / "input_example.json"
            if example.is_file():
                data = parse_json(example.read_bytes())  # NaN for missing values
                frame = native_frame(
                    {"columns": data["columns"], "data": data["data"]}, self.schema, 1 << 30
                )
                self.predict(frame, probabilities=self.binary)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            print(f"tessera serve: cannot load the model: {self.failure}", file=sys.stderr)
            return
        self.ready.set()

    def predict(self, frame: Any, *, probabilities: bool) -> dict[str, Any]:
        """``{"predictions": ndarray}``, plus ``"probabilities"`` of the positive class."""
        import numpy as np

        if len(frame) == 0:
            return {"predictions": [], **({"probabilities": []} if probabilities else {})}
        out: dict[str, Any] = {"predictions": self.pipeline.predict(frame)}
        if probabilities:
            out["probabilities"] = np.ascontiguousarray(self.pipeline.predict_proba(frame)[:, 1])
        return out


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def create_app(model_dir: Path, info: dict[str, Any], config: ServingConfig) -> Starlette:
    """The serving application for one downloaded (hash-checked) MLflow model directory.

    Args:
        model_dir: the model directory, as :meth:`ModelRegistry.download` returned it.
        info: the version's :meth:`VersionInfo.to_dict` (name, version, task, ...).
        config: limits and settings of ``serving.yaml``.
    """
    model = ServedModel(Path(model_dir), info, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=model.load, name="tessera-model-load", daemon=True).start()
        yield

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(request: Request) -> Response:
        if model.ready.is_set():
            return json_response({"status": "ready", "model": model.identity})
        if model.failure:
            return json_response({"status": "failed", "message": model.failure}, 503)
        return json_response({"status": "loading"}, 503)

    def not_ready() -> Response:
        message = model.failure or "the model is still loading"
        return json_response({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}, 503)

    async def score(
        request: Request, parse: Callable[[Any, InputSchema, int], Any], native: bool
    ) -> Response:
        if not model.ready.is_set():
            return not_ready()
        try:
            media = _media_type(request)
            if media not in ("application/json", "text/csv", ""):
                raise UnsupportedMediaType(
                    f"unsupported content type '{media}': use application/json or text/csv"
                )
            body = await read_body(request, config.max_body_bytes)
            if media == "text/csv":
                frame = csv_frame(body, model.schema, config.max_batch_rows)
            else:
                frame = parse(parse_json(body), model.schema, config.max_batch_rows)
            try:
                result = await run_in_threadpool(
                    model.predict, frame, probabilities=native and model.binary
                )
            except (ValueError, TypeError, KeyError) as exc:
                raise InputError(f"the model cannot score this input: {exc}") from exc
        except InputError as exc:
            return _error(exc)
        if native:
            result["request_id"] = uuid.uuid4().hex
            result["model"] = model.identity
        return json_response(result)

    async def predict(request: Request) -> Response:
        return await score(request, native_frame, True)

    async def invocations(request: Request) -> Response:
        return await score(request, mlflow_frame, False)

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.model = model
    return app


# --- several worker processes ----------------------------------------------------------------


def encode_spec(model_dir: Path, info: dict[str, Any], config: ServingConfig) -> str:
    """What :func:`from_env` needs, as the value of the ``TESSERA_SERVE_SPEC`` variable."""
    spec = {"model_dir": str(model_dir), "info": info, "config": config.model_dump()}
    return base64.urlsafe_b64encode(orjson.dumps(spec)).decode()


def from_env() -> Starlette:
    """The application of a worker process (uvicorn factory), from ``TESSERA_SERVE_SPEC``."""
    spec = orjson.loads(base64.urlsafe_b64decode(os.environ[ENV_VAR]))
    return create_app(
        Path(spec["model_dir"]), spec["info"], ServingConfig.model_validate(spec["config"])
    )
