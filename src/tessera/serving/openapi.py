"""The OpenAPI document of ``tessera serve``, with request schemas from each model's signature.

Each served model gets a ``<Name>Row`` schema (one property per input column, typed as its MLflow
signature declares it) used by the native and MLflow request bodies of its routes. ``/docs``
renders the document with Swagger UI.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tessera import __version__

if TYPE_CHECKING:
    from tessera.serving.inputs import InputSchema
    from tessera.serving.runtime import Server

_JSON_TYPES: dict[str, dict[str, str]] = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer"},
    "integer": {"type": "integer"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string"},
        "message": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}


def _schema_name(model: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", model) if p) or "Model"


def row_schema(schema: InputSchema) -> dict[str, Any]:
    """JSON Schema of one input row: an object with the signature's columns."""
    properties: dict[str, Any] = {}
    for column in schema.columns:
        prop: dict[str, Any] = dict(_JSON_TYPES.get(column.type, {}))
        # a null is a missing number, integers included (the imputer's business)
        if column.type in ("double", "float", "long", "integer") or not column.required:
            prop = {"anyOf": [prop, {"type": "null"}]} if prop else {}
        properties[column.name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [c.name for c in schema.columns if c.required],
        "additionalProperties": False,
    }


def _error_responses(*codes: int) -> dict[str, Any]:
    described = {
        400: "Malformed body",
        401: "Missing or wrong bearer token",
        403: "The admin API is off",
        404: "Unknown model",
        409: "Not possible in the current state",
        413: "Too many rows or bytes",
        415: "Unsupported content type",
        422: "The input does not fit the model's schema",
        503: "Not ready",
    }
    return {
        str(code): {
            "description": described[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _scoring_paths(prefix: str, row_ref: str, name: str) -> dict[str, Any]:
    operation = _schema_name(name) + ("" if prefix else "_default")
    rows = {"type": "array", "items": {"$ref": row_ref}, "maxItems": 10_000}
    table: dict[str, Any] = {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
        },
    }
    key = {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "Sticky routing key"}
    native = {
        "oneOf": [
            {
                "type": "object",
                "required": ["inputs"],
                "properties": {"inputs": rows, "key": key},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {**table["properties"], "key": key},
                "additionalProperties": False,
            },
        ]
    }
    mlflow = {
        "oneOf": [
            {
                "type": "object",
                "required": [fmt],
                "properties": {fmt: body},
                "additionalProperties": False,
            }
            for fmt, body in (
                ("dataframe_split", table),
                ("dataframe_records", rows),
                ("instances", rows),
                ("inputs", rows),
            )
        ]
    }
    predictions = {"type": "array", "items": {}}
    return {
        f"{prefix}/predict": {
            "post": {
                "summary": f"Predict with {name} (native formats)",
                "operationId": f"predict_{operation}",
                "parameters": [_sticky_header()],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": native}},
                },
                "responses": {
                    "200": {
                        "description": "Predictions",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["predictions", "request_id", "model"],
                                    "properties": {
                                        "predictions": predictions,
                                        "probabilities": {
                                            "type": "array",
                                            "items": {"type": "number"},
                                        },
                                        "request_id": {"type": "string"},
                                        "model": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    **_error_responses(400, 413, 415, 422, 503),
                },
            }
        },
        f"{prefix}/invocations": {
            "post": {
                "summary": f"Predict with {name} (MLflow scoring protocol)",
                "operationId": f"invocations_{operation}",
                "parameters": [_sticky_header()],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": mlflow},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "Predictions",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["predictions"],
                                    "properties": {"predictions": predictions},
                                }
                            }
                        },
                    },
                    **_error_responses(400, 413, 415, 422, 503),
                },
            }
        },
    }


def _sticky_header() -> dict[str, Any]:
    return {
        "name": "X-Tessera-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Sticky routing key (the same key gets the same variant)",
    }


def openapi_document(server: Server) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the server's routes and loaded models."""
    schemas: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, Any] = {}
    for position, (name, entry) in enumerate(server.entries.items()):
        row_name = f"{_schema_name(name)}Row"
        model = entry.champion
        schemas[row_name] = row_schema(model.schema) if model else {"type": "object"}
        ref = f"#/components/schemas/{row_name}"
        if position == 0:
            paths.update(_scoring_paths("", ref, name))
        paths.update(_scoring_paths(f"/models/{name}", ref, name))
    label = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    item = {
        "type": "object",
        "required": ["request_id"],
        "properties": {
            "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
            "label": label,
            "labels": {"type": "array", "items": label, "minItems": 1},
            "row": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        },
        "additionalProperties": False,
    }
    admin_body = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("model", "strategy", "candidate", "reason")},
        "additionalProperties": False,
    }
    simple = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }

    def admin(summary: str, method: str, with_body: bool, ok: str = "200") -> dict[str, Any]:
        operation: dict[str, Any] = {
            "summary": summary,
            "security": [{"bearer": []}],
            "responses": {
                ok: {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_error_responses(400, 401, 403, 409, 422),
            },
        }
        if with_body:
            operation["requestBody"] = {"content": {"application/json": {"schema": admin_body}}}
        return {method: operation}

    paths.update(
        {
            "/feedback": {
                "post": {
                    "summary": "Ground truth for earlier predictions (by request_id)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        item,
                                        {
                                            "type": "object",
                                            "required": ["feedback"],
                                            "properties": {
                                                "feedback": {"type": "array", "items": item}
                                            },
                                            "additionalProperties": False,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_error_responses(400, 409, 413, 415, 422, 503),
                    },
                }
            },
            "/health": {"get": {"summary": "Liveness", "responses": simple}},
            "/ready": {
                "get": {
                    "summary": "Readiness: every model loaded and warmed up",
                    "responses": {**simple, **_error_responses(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/models": admin("Versions served now", "get", False),
            "/admin/rollout": admin("Rollout status", "get", False),
            "/admin/rollout/start": admin("Start a rollout", "post", True, "201"),
            "/admin/rollout/promote": admin("Promote the candidate", "post", True),
            "/admin/rollout/abort": admin("Abort the rollout", "post", True),
            "/admin/reload": admin("Check aliases and rollouts now", "post", False, "202"),
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera serving", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def docs_html() -> str:
    """Swagger UI for ``/openapi.json`` (its scripts come from the jsDelivr CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    page = get_swagger_ui_html(openapi_url="/openapi.json", title="Tessera serving - API")
    return bytes(page.body).decode()
