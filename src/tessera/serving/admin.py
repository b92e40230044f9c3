"""The admin API of ``tessera serve``: rollouts and reloads over HTTP, behind a bearer token.

The token is read from the environment variable ``admin.token_env`` (``TESSERA_ADMIN_TOKEN``)
or, when that is unset, from the file ``admin.token_file``. Without a token the admin API is off
(403), unless ``admin.allow_localhost`` opens it to loopback clients only.

Routes (JSON bodies; every one answers JSON, errors with ``error_code`` and ``message``):

- ``GET /admin/models``: the versions served now, per model and variant;
- ``GET /admin/rollout?model=NAME``: the rollout status (as ``tessera rollout status --json``);
- ``POST /admin/rollout/start`` ``{"model", "strategy", "candidate", "reason"}`` (all optional);
- ``POST /admin/rollout/promote`` and ``POST /admin/rollout/abort`` ``{"model", "reason"}``;
- ``POST /admin/reload``: check the registry aliases and the rollout state now.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tessera.errors import TesseraError, UsageError
from tessera.serving.inputs import InputError, parse_json

if TYPE_CHECKING:
    from tessera.serving.config import AdminConfig
    from tessera.serving.runtime import Server

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
Handler = Callable[[Request], Awaitable[Response]]


def admin_token(config: AdminConfig, root: Path) -> str | None:
    """The bearer token, or None when none is configured.

    Raises:
        UsageError: ``admin.token_file`` is set but cannot be read, or is empty.
    """
    token = os.environ.get(config.token_env, "").strip()
    if token:
        return token
    if config.token_file is None:
        return None
    path = root / config.token_file
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(
            f"serving.yaml: admin.token_file {config.token_file!r} cannot be read: "
            f"{exc.strerror or exc}"
        ) from None
    if not token:
        raise UsageError(f"serving.yaml: admin.token_file {config.token_file!r} is empty")
    return token


def admin_routes(server: Server) -> list[Route]:
    """The ``/admin/*`` routes of ``server``, each behind the token check."""
    from tessera.serving.app import error_response, json_response

    config = server.config.admin
    token = admin_token(config, server.root)

    def guarded(handler: Handler) -> Handler:
        async def route(request: Request) -> Response:
            if token is not None:
                given = request.headers.get("authorization", "")
                scheme, _, value = given.partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    value.strip().encode(), token.encode()
                ):
                    response = error_response(
                        401,
                        "UNAUTHENTICATED",
                        "the admin API needs 'Authorization: Bearer <token>'",
                    )
                    response.headers["www-authenticate"] = "Bearer"
                    return response
            elif not (
                config.allow_localhost
                and request.client is not None
                and request.client.host in _LOOPBACK
            ):
                return error_response(
                    403,
                    "PERMISSION_DENIED",
                    f"the admin API is off: set {config.token_env} (or admin.token_file in "
                    "serving.yaml) to a bearer token, or admin.allow_localhost: true for "
                    "loopback clients",
                )
            try:
                return await handler(request)
            except InputError as exc:
                return json_response(exc.to_dict(), exc.status)
            except TesseraError as exc:
                status = 400 if exc.exit_code == 2 else 409
                return error_response(status, "INVALID_STATE", exc.render())

        return route

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = parse_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise InputError(
                "expected a JSON object", [{"field": "(body)", "problem": "expected an object"}]
            )
        allowed = {"model", "strategy", "candidate", "reason"}
        extra = sorted(set(data) - allowed)
        bad = [
            k for k in allowed & set(data) if data[k] is not None and not isinstance(data[k], str)
        ]
        if extra or bad:
            raise InputError(
                "unexpected or malformed fields",
                [{"field": k, "problem": "unexpected key"} for k in extra]
                + [{"field": k, "problem": "expected a string"} for k in sorted(bad)],
            )
        return data

    def model_of(value: Any) -> str:
        name = value or server.default.name
        if name not in server.entries:
            raise UsageError(
                f"no model '{name}' is served here; served: {', '.join(server.entries)}"
            )
        return str(name)

    def actor(request: Request) -> str:
        host = request.client.host if request.client else "unknown"
        return f"admin API ({host})"

    async def models(request: Request) -> Response:
        return json_response(
            {
                name: {
                    "alias": entry.alias,
                    "champion": entry.champion.version if entry.champion else None,
                    "candidate": entry.candidate.version if entry.candidate else None,
                    "rollout": entry.rollout.current.id
                    if entry.rollout is not None and entry.rollout.current is not None
                    else None,
                }
                for name, entry in server.entries.items()
            }
        )

    async def status(request: Request) -> Response:
        from tessera.serving.rollout import rollout_status

        name = model_of(request.query_params.get("model"))
        registry = server.registry
        result = await run_in_threadpool(
            rollout_status,
            registry.records,
            registry,
            name,
            log_dir=server.log_dir if server.predictions is not None else None,
        )
        return json_response(result)

    async def start(request: Request) -> Response:
        from tessera.serving.rollout import start_rollout

        data = await body(request)
        registry = server.registry
        rollout = await run_in_threadpool(
            lambda: start_rollout(
                registry.records,
                registry,
                model_of(data.get("model")),
                server.config.rollout,
                strategy=data.get("strategy"),
                candidate=data.get("candidate"),
                actor=actor(request),
                reason=data.get("reason"),
            )
        )
        server.wake()
        return json_response(_plain_rollout(rollout), 201)

    async def promote(request: Request) -> Response:
        from tessera.serving.rollout import promote_rollout

        data = await body(request)
        reason = _reason(data)
        registry = server.registry
        rollout = await run_in_threadpool(
            lambda: promote_rollout(
                registry.records,
                registry,
                model_of(data.get("model")),
                actor=actor(request),
                reason=reason,
            )
        )
        server.wake()
        return json_response(_plain_rollout(rollout))

    async def abort(request: Request) -> Response:
        from tessera.serving.rollout import abort_rollout

        data = await body(request)
        reason = _reason(data)
        registry = server.registry
        rollout = await run_in_threadpool(
            lambda: abort_rollout(
                registry.records, model_of(data.get("model")), actor=actor(request), reason=reason
            )
        )
        server.wake()
        return json_response(_plain_rollout(rollout))

    async def reload(request: Request) -> Response:
        server.wake()
        return json_response({"status": "reloading"}, 202)

    return [
        Route("/admin/models", guarded(models), methods=["GET"]),
        Route("/admin/rollout", guarded(status), methods=["GET"]),
        Route("/admin/rollout/start", guarded(start), methods=["POST"]),
        Route("/admin/rollout/promote", guarded(promote), methods=["POST"]),
        Route("/admin/rollout/abort", guarded(abort), methods=["POST"]),
        Route("/admin/reload", guarded(reload), methods=["POST"]),
    ]


def _reason(data: dict[str, Any]) -> str:
    reason = data.get("reason")
    if not reason:
        raise InputError(
            'a "reason" is required: it is recorded in the audit trail',
            [{"field": "reason", "problem": "missing"}],
        )
    return str(reason)


def _plain_rollout(rollout: Any) -> Any:
    """A rollout as JSON-able data (a dataclass, or whatever the store returned)."""
    import dataclasses

    if dataclasses.is_dataclass(rollout) and not isinstance(rollout, type):
        return dataclasses.asdict(rollout)
    return rollout
