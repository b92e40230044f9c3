"""The ceiling of bench/serving: a bare Starlette endpoint that parses JSON and calls ``predict``.

``POST /predict`` takes Tessera's native split body (``{"columns": [...], "data": [[...]]}``),
parses it with orjson, builds a pandas DataFrame the cheapest way for the benchmark's all-numeric
table (one float64 array), calls the pipeline's ``predict`` on the event loop and answers
``{"predictions": [...]}`` with orjson: no validation, no thread pool, no metrics, no log.
``POST /noop`` parses the same body and answers a constant without touching the model: the
floor of the HTTP stack and JSON alone. ``GET /ready`` answers 200 once a worker serves (the
model is loaded before).

The model is obtained the way ``tessera serve`` obtains it: the main process downloads the
registered version from the project's registry (files hash-checked), and each worker loads the
directory with skops, trusting only Tessera's reviewed types
(:func:`tessera.registry.models.load_directory`), before it accepts a connection.

Run from the project directory (``bench/serving/run.py`` does)::

    python bench/serving/bare.py --port 8090 --workers 2 --model cancer@champion
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: The downloaded model directory, handed from the main process to the workers.
MODEL_DIR_VAR = "BENCH_BARE_MODEL_DIR"


def create_app() -> Starlette:
    """The application of one worker (a uvicorn factory): the model is loaded first."""
    from tessera.registry.models import RegistryError, load_directory

    model = load_directory(Path(os.environ[MODEL_DIR_VAR]), RegistryError)

    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        frame = pd.DataFrame(np.asarray(body["data"], dtype=np.float64), columns=body["columns"])
        predictions = model.predict(frame)
        return Response(
            orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
        )

    async def noop(request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(b'{"predictions":[]}', media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/noop", noop, methods=["POST"]),
            Route("/ready", ready, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="cancer@champion", help="NAME@ALIAS in the registry")
    args = parser.parse_args()

    from tessera.cli.model_cmds import open_registry

    registry = open_registry()  # the project of the current directory
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        _, model_dir = registry.download(args.model, Path(tmp))
        os.environ[MODEL_DIR_VAR] = str(model_dir)
        uvicorn.run(
            "bare:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            http="httptools",
            loop="uvloop",
            log_level="warning",
            app_dir=str(Path(__file__).resolve().parent),
        )


if __name__ == "__main__":
    main()
