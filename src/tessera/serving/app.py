"""The HTTP API of ``tessera serve`` (Starlette, orjson).

Routes: ``POST /predict`` (native formats), ``POST /invocations`` (MLflow's scoring protocol,
answered like ``mlflow models serve``), the same two under ``/models/NAME/`` for every model of
``serving.yaml``, ``POST /feedback``, ``GET /health``, ``GET /ready``, ``GET /metrics``,
``GET /openapi.json`` and ``GET /docs``, and the admin API under ``/admin/``
(:mod:`tessera.serving.admin`).

A scoring request is parsed and validated, routed to the champion or, during an A/B test or a
canary, to the candidate (sticky by the body's ``"key"`` or the ``X-Tessera-Key`` header), and
answered; a candidate that fails is answered for by the champion and counted as an error of the
candidate. During a shadow rollout the response goes out first, and the candidate then scores
the same rows in the background. Metrics, the prediction log and the rollout statistics are
updated in memory on the way out; the writing happens on other threads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tessera.serving.config import ServingConfig
from tessera.serving.inputs import (
    InputError,
    InputSchema,
    TooLarge,
    UnsupportedMediaType,
    csv_frame,
    infinite_values,
    mlflow_frame,
    native_frame,
    parse_json,
)
from tessera.serving.runtime import LoadedModel, ModelEntry, Server

ENV_VAR = "TESSERA_SERVE_SPEC"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: Requests up to this many rows are scored in micro-batches with concurrent ones (a model's
#: scoring thread); larger ones on the thread pool, alone.
BATCHED_ROWS = 64
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: The highest row number of a prediction (the log's ``row`` column is int32).
MAX_ROW = 2**31 - 1
Parser = Callable[[Any, InputSchema, int], Any]


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (numpy arrays and scalars included)."""
    return Response(
        orjson.dumps(content, default=_plain, option=_JSON_OPTIONS),
        status,
        headers=headers,
        media_type="application/json",
    )


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: object or non-contiguous arrays, other scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def error_response(status: int, error_code: str, message: str, **extra: Any) -> Response:
    """An error in MLflow's shape: ``{"error_code", "message", ...}``."""
    return json_response({"error_code": error_code, "message": message, **extra}, status)


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


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    return given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()


class _Scoring:
    """The scoring routes of one server: parse, route, predict, account."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config

    async def handle(self, request: Request, entry: ModelEntry, native: bool) -> Response:
        with self.server.metrics.in_flight():
            return await self._handle(request, entry, native)

    async def _handle(self, request: Request, entry: ModelEntry, native: bool) -> Response:
        server = self.server
        route = "predict" if native else "invocations"
        started = time.perf_counter()
        champion = entry.champion
        if champion is None:  # counted without a version: none is loaded
            server.metrics.request(
                entry.name, "", "champion", route, 503, time.perf_counter() - started
            )
            message = entry.failure or "the model is still loading"
            return error_response(503, "TEMPORARILY_UNAVAILABLE", message)
        request_id = _request_id(request)
        try:
            media = _media_type(request)
            if media not in ("application/json", "text/csv", ""):
                raise UnsupportedMediaType(
                    f"unsupported content type '{media}': use application/json or text/csv"
                )
            body = await read_body(request, self.config.max_body_bytes)
            data = None if media == "text/csv" else parse_json(body)
            key = request.headers.get("x-tessera-key")
            if native and isinstance(data, dict) and "key" in data:
                key = _sticky_key(data["key"])
            rollout = entry.rollout.current if entry.rollout is not None else None
            candidate = entry.candidate if rollout is not None else None
            parse: Parser = native_frame if native else mlflow_frame
            model, variant = champion, "champion"
            answer: tuple[Any, Any, Any] | None = None
            if (
                candidate is not None
                and rollout is not None
                and rollout.strategy != "shadow"
                and entry.rollout is not None
                and entry.rollout.route(key, request_id) == "candidate"
            ):
                answer = await self._try_candidate(entry, candidate, body, data, parse, route)
                if answer is not None:
                    model, variant = candidate, "candidate"
            if answer is None:  # the champion's answer (also when the candidate failed)
                frame = self._frame(body, data, parse, champion)
                answer = (frame, *await self._predict(champion, frame))
            frame, predictions, probabilities = answer
        except InputError as exc:
            self._account(entry, champion, "champion", route, exc.status, started, error=False)
            return json_response(exc.to_dict(), exc.status)
        except Exception as exc:
            self._account(entry, champion, "champion", route, 500, started, error=True)
            return error_response(
                500, "INTERNAL_ERROR", f"the model failed: {type(exc).__name__}: {exc}"
            )
        seconds = time.perf_counter() - started
        self._account(entry, model, variant, route, 200, started, error=False, seconds=seconds)
        self._log(
            request_id, entry, model, variant, rollout, seconds, frame, predictions, probabilities
        )
        server.metrics.predictions(
            model.name, model.version, variant, model.task, predictions, probabilities
        )
        if native:
            content: dict[str, Any] = {"predictions": predictions}
            if probabilities is not None:
                content["probabilities"] = probabilities
            content["request_id"] = request_id
            content["model"] = {**model.identity, "variant": variant}
        else:
            content = {"predictions": predictions}
        background = None
        if (
            candidate is not None
            and rollout is not None
            and rollout.strategy == "shadow"
            and entry.rollout is not None
            and entry.rollout.mirror(key, request_id)
        ):
            background = BackgroundTask(
                self._shadow, entry, candidate, rollout, request_id, body, data, parse, predictions
            )
        response = json_response(content, headers={"x-request-id": request_id})
        response.background = background
        return response

    async def _try_candidate(
        self,
        entry: ModelEntry,
        candidate: LoadedModel,
        body: bytes,
        data: Any,
        parse: Parser,
        route: str,
    ) -> tuple[Any, Any, Any] | None:
        """The candidate's frame and answer, or None when it cannot answer: the champion then
        answers, and a failure of the candidate's model (not of the input) counts against it."""
        started = time.perf_counter()
        try:
            frame = self._frame(body, data, parse, candidate)
        except InputError:
            return None
        try:
            return (frame, *await self._predict(candidate, frame))
        except InputError:
            # The input's fault when the champion cannot score it either (the client gets the
            # champion's 422); only otherwise a failure of the candidate.
            champion = entry.champion
            try:
                if champion is not None:
                    await self._predict(champion, self._frame(body, data, parse, champion))
            except InputError:
                return None
            self._account(entry, candidate, "candidate", route, 500, started, error=True)
            return None
        except Exception:
            self._account(entry, candidate, "candidate", route, 500, started, error=True)
            return None

    def _frame(self, body: bytes, data: Any, parse: Parser, model: LoadedModel) -> Any:
        try:
            if data is None:
                return csv_frame(body, model.schema, self.config.max_batch_rows)
            return parse(data, model.schema, self.config.max_batch_rows)
        except InputError:
            raise
        except Exception as exc:  # the input's fault, whatever the converters ran into
            raise InputError(f"cannot read the input: {type(exc).__name__}: {exc}") from exc

    async def _predict(self, model: LoadedModel, frame: Any) -> tuple[Any, Any]:
        try:
            if len(frame) <= BATCHED_ROWS:
                return await model.batcher.predict(frame)
            return await run_in_threadpool(model.predict, frame)
        except (ValueError, TypeError, KeyError) as exc:
            problems = infinite_values(frame) if "infinity" in str(exc) else None
            raise InputError(f"the model cannot score this input: {exc}", problems) from exc

    def _account(
        self,
        entry: ModelEntry,
        model: LoadedModel,
        variant: str,
        route: str,
        status: int,
        started: float,
        *,
        error: bool,
        seconds: float | None = None,
    ) -> None:
        seconds = time.perf_counter() - started if seconds is None else seconds
        self.server.metrics.request(model.name, model.version, variant, route, status, seconds)
        runtime = entry.rollout
        if runtime is not None and runtime.current is not None and (error or status < 400):
            runtime.record(variant, seconds, error)

    def _log(
        self,
        request_id: str,
        entry: ModelEntry,
        model: LoadedModel,
        variant: str,
        rollout: Any,
        seconds: float,
        frame: Any,
        predictions: Any,
        probabilities: Any,
    ) -> None:
        self.server.remember(request_id, model.name, model.version, variant, len(predictions))
        log = self.server.predictions
        if log is not None:
            log.record(
                request_id=request_id,
                model=model.name,
                version=model.version,
                variant=variant,
                rollout_id=rollout.id if rollout is not None else None,
                latency_ms=seconds * 1000.0,
                frame=frame,
                predictions=predictions,
                probabilities=probabilities,
                time=time.time(),
            )

    async def _shadow(
        self,
        entry: ModelEntry,
        candidate: LoadedModel,
        rollout: Any,
        request_id: str,
        body: bytes,
        data: Any,
        parse: Parser,
        served: Any,
    ) -> None:
        """Score a mirrored request with the candidate; compare, count and log it."""
        import numpy as np

        started = time.perf_counter()
        runtime = entry.rollout
        try:
            frame = self._frame(body, data, parse, candidate)
            predictions, probabilities = await run_in_threadpool(candidate.predict, frame)
        except Exception:
            seconds = time.perf_counter() - started
            self.server.metrics.request(
                candidate.name, candidate.version, "shadow", "shadow", 500, seconds
            )
            if runtime is not None:
                runtime.record("shadow", seconds, True)
            return
        seconds = time.perf_counter() - started
        self.server.metrics.request(
            candidate.name, candidate.version, "shadow", "shadow", 200, seconds
        )
        if runtime is not None:
            runtime.record("shadow", seconds, False)
            if len(predictions) == len(served):
                if candidate.task == "regression":
                    agree = np.isclose(
                        np.asarray(predictions, float), np.asarray(served, float), rtol=1e-6
                    )
                else:
                    agree = np.asarray(predictions) == np.asarray(served)
                for value in np.asarray(agree).tolist():
                    runtime.record_agreement(bool(value))
        self._log(
            request_id,
            entry,
            candidate,
            "shadow",
            rollout,
            seconds,
            frame,
            predictions,
            probabilities,
        )


def _sticky_key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise InputError(
        '"key" must be a string or a number',
        [{"field": "key", "problem": "expected a string or a number"}],
    )


# --- feedback ----------------------------------------------------------------------------------


def feedback_items(data: Any) -> list[tuple[str, int, Any]]:
    """``(request_id, row, label)`` triples of a ``POST /feedback`` body.

    Accepted: one object ``{"request_id", "label"}`` (row 0) or ``{"request_id", "labels": [...]}``
    (one per row of the request), optionally with ``"row"``; or ``{"feedback": [objects]}``.

    Raises:
        InputError: naming every offending item and field.
    """
    if isinstance(data, dict) and "feedback" in data:
        extra = sorted(set(data) - {"feedback"})
        items = data["feedback"]
        where = "feedback"
        if extra or not isinstance(items, list):
            raise InputError(
                '"feedback" must be the only key and a list of objects',
                [{"field": k, "problem": "unexpected key"} for k in extra]
                or [{"field": "feedback", "problem": "expected a list of objects"}],
            )
    elif isinstance(data, dict):
        items, where = [data], ""
    else:
        raise InputError(
            'expected a JSON object: {"request_id": ..., "label": ...} or {"feedback": [...]}',
            [{"field": "(body)", "problem": "expected an object"}],
        )
    triples: list[tuple[str, int, Any]] = []
    problems: list[dict[str, str]] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]." if where else ""
        if not isinstance(item, dict):
            problems.append({"field": f"{where}[{i}]", "problem": "expected an object"})
            continue
        for key in sorted(set(item) - {"request_id", "label", "labels", "row"}):
            problems.append({"field": at + key, "problem": "unexpected key"})
        request_id = item.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            problems.append(
                {"field": at + "request_id", "problem": "expected the request_id of a prediction"}
            )
            continue
        if ("label" in item) == ("labels" in item):
            problems.append(
                {"field": at + "label", "problem": 'give exactly one of "label", "labels"'}
            )
            continue
        row = item.get("row", 0)
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            problems.append({"field": at + "row", "problem": "expected a row number >= 0"})
            continue
        labels = [item["label"]] if "label" in item else item["labels"]
        if not isinstance(labels, list) or not labels:
            problems.append({"field": at + "labels", "problem": "expected a non-empty list"})
            continue
        if row + len(labels) - 1 > MAX_ROW:
            problems.append({"field": at + "row", "problem": f"expected a row number <= {MAX_ROW}"})
            continue
        for j, label in enumerate(labels):
            if not isinstance(label, str | int | float | bool) or (
                isinstance(label, float) and label != label
            ):
                field = at + ("label" if "label" in item else f"labels[{j}]")
                problems.append({"field": field, "problem": "expected a string, number or boolean"})
            else:
                triples.append((request_id, row + j, label))
    if problems:
        raise InputError(
            f"the feedback does not fit ({len(problems)} problem(s))",
            problems[:100],
        )
    return triples


def check_feedback(items: list[tuple[str, int, Any]], server: Server) -> None:
    """Check feedback for requests this process answered (it remembers the last
    :data:`~tessera.serving.runtime.RECENT_REQUESTS`): the row must exist, and a classifier's
    label must be one of its classes. Feedback for other requests (answered by another worker
    or replica, or before a restart) cannot be checked here and is accepted as it is.

    Raises:
        InputError: naming every offending request row.
    """
    problems: list[dict[str, str]] = []
    classes: dict[tuple[str, str], tuple[LoadedModel, Any] | None] = {}
    for request_id, row, label in items:
        known = server.recent.get(request_id)
        if known is None:
            continue
        name, version, _, rows = known
        field = f"{request_id}[{row}]"
        if row >= rows:
            had = f"{rows} row{'s' if rows != 1 else ''}"
            problems.append({"field": field, "problem": f"request {request_id} had {had}"})
            continue
        if (name, version) not in classes:
            classes[(name, version)] = _served_classes(server, name, version)
        served = classes[(name, version)]
        if served is None:  # no longer loaded here
            continue
        model, positions = served
        if positions is None:
            if not _is_number_text(label):
                problems.append({"field": field, "problem": f"expected a number, got {label!r}"})
        elif positions.find(label) < 0:
            known_classes = ", ".join(map(str, model.classes or []))
            problems.append(
                {"field": field, "problem": f"{label!r} is none of the classes ({known_classes})"}
            )
    if problems:
        raise InputError(
            f"the feedback does not fit the predictions ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''})",
            problems[:100],
        )


def _served_classes(server: Server, name: str, version: str) -> tuple[LoadedModel, Any] | None:
    """The loaded version and, for a classifier with known classes, their positions."""
    from tessera.serving.predlog import ClassPositions

    entry = server.entries.get(name)
    if entry is None:
        return None
    for model in (entry.champion, entry.candidate):
        if model is not None and model.version == version:
            if model.task == "regression":
                return model, None
            return (model, ClassPositions(model.classes)) if model.classes else None
    return None


def _is_number_text(label: Any) -> bool:
    if isinstance(label, bool):
        return False
    try:
        float(str(label))
    except ValueError:
        return False
    return True


# --- the application ---------------------------------------------------------------------------


def create_app(
    root: Path,
    config: ServingConfig,
    initial: dict[str, tuple[dict[str, Any], Path]] | None = None,
    *,
    wait_loaded: bool = False,
) -> Starlette:
    """The serving application of the project at ``root``.

    Args:
        root: the project root (its registry, metadata store and prediction log).
        config: ``serving.yaml``.
        initial: model name -> (version info, downloaded model directory) already fetched and
            hash-checked by the command line, so a worker does not fetch them again.
        wait_loaded: finish starting up (and so take connections) only once every model is
            loaded or failed: one of several workers sharing a socket, which must not answer
            503 while a sibling is ready (at start, or after a worker was replaced).
    """
    from tessera.serving.admin import admin_routes
    from tessera.serving.openapi import docs_html, openapi_document

    server = Server(Path(root), config, initial)
    scoring = _Scoring(server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.start()
        try:
            while wait_loaded and not (
                server.ready or any(e.failure for e in server.entries.values())
            ):
                await asyncio.sleep(0.02)
            yield
        finally:
            await run_in_threadpool(server.stop)

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(request: Request) -> Response:
        models = {
            name: ({**e.champion.identity, "scoring": e.champion.scoring} if e.champion else None)
            for name, e in server.entries.items()
        }
        if server.ready:
            return json_response({"status": "ready", "models": models})
        failures = {n: e.failure for n, e in server.entries.items() if e.failure}
        if failures:
            return json_response({"status": "failed", "failures": failures}, 503)
        return json_response({"status": "loading", "models": models}, 503)

    async def ping(request: Request) -> Response:  # MLflow's scoring server readiness probe
        return Response(b"\n", 200 if server.ready else 503, media_type="application/json")

    async def version(request: Request) -> Response:  # as MLflow's scoring server answers it
        from tessera import __version__

        return Response(__version__, 200, media_type="text/plain")

    async def predict(request: Request) -> Response:
        return await scoring.handle(request, server.default, True)

    async def invocations(request: Request) -> Response:
        return await scoring.handle(request, server.default, False)

    def _entry(request: Request) -> ModelEntry | None:
        return server.entries.get(request.path_params["name"])

    async def model_predict(request: Request) -> Response:
        entry = _entry(request)
        if entry is None:
            return _unknown_model(request, server)
        return await scoring.handle(request, entry, True)

    async def model_invocations(request: Request) -> Response:
        entry = _entry(request)
        if entry is None:
            return _unknown_model(request, server)
        return await scoring.handle(request, entry, False)

    async def feedback(request: Request) -> Response:
        try:
            if _media_type(request) not in ("application/json", ""):
                raise UnsupportedMediaType("feedback is JSON: use application/json")
            items = feedback_items(parse_json(await read_body(request, config.max_body_bytes)))
            check_feedback(items, server)
        except InputError as exc:
            return json_response(exc.to_dict(), exc.status)
        log = server.feedback
        if log is None:
            return error_response(
                409,
                "FEEDBACK_DISABLED",
                "feedback needs the prediction log: set prediction_log.enabled in serving.yaml",
            )
        if not log.record(items, time.time()):
            return error_response(
                503, "TEMPORARILY_UNAVAILABLE", "the feedback log is full; retry later"
            )
        counted: dict[tuple[str, str, str], int] = {}
        for request_id, _, _ in items:
            known = server.recent.get(request_id)
            who = known[:3] if known else (server.default.name, "unknown", "unknown")
            counted[who] = counted.get(who, 0) + 1
        for (model, version, variant), n in counted.items():
            server.metrics.feedback(model, version, variant, n)
        return json_response({"accepted": len(items)}, 202)

    async def metrics(request: Request) -> Response:
        body, media_type = server.metrics.render()
        return Response(body, 200, media_type=media_type)

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(server))

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html())

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/models/{name}/predict", model_predict, methods=["POST"]),
            Route("/models/{name}/invocations", model_invocations, methods=["POST"]),
            Route("/feedback", feedback, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
            *admin_routes(server),
        ],
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.server = server
    return app


def _unknown_model(request: Request, server: Server) -> Response:
    return error_response(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        f"no model '{request.path_params['name']}' is served here; served: "
        + ", ".join(server.entries),
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "ENDPOINT_NOT_FOUND", f"no route {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(
        405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.url.path}"
    )


# --- several worker processes ----------------------------------------------------------------


def encode_spec(
    root: Path, config: ServingConfig, initial: dict[str, tuple[dict[str, Any], Path]]
) -> str:
    """What :func:`from_env` needs, as the value of the ``TESSERA_SERVE_SPEC`` variable."""
    spec = {
        "root": str(root),
        "config": config.model_dump(),
        "initial": {name: [info, str(path)] for name, (info, path) in initial.items()},
    }
    return base64.urlsafe_b64encode(orjson.dumps(spec)).decode()


def from_env() -> Starlette:
    """The application of a worker process (uvicorn factory), from ``TESSERA_SERVE_SPEC``."""
    spec = orjson.loads(base64.urlsafe_b64decode(os.environ[ENV_VAR]))
    initial = {name: (info, Path(path)) for name, (info, path) in spec["initial"].items()}
    config = ServingConfig.model_validate(spec["config"])
    return create_app(Path(spec["root"]), config, initial, wait_loaded=True)
