"""``tessera serve``: the HTTP prediction API of the project's registered model.

Start-up stays light: uvicorn, Starlette and pandas are imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from tessera.registry.models import ModelRegistry
    from tessera.serving.config import ServingConfig

HostOpt = typer.Option(None, "--host", help="Address to listen on (default: serving.yaml's).")
PortOpt = typer.Option(None, "--port", help="Port to listen on (default: serving.yaml's).")
WorkersOpt = typer.Option(1, "--workers", min=1, help="Worker processes.")


def serving_config(root: Path, registry: ModelRegistry) -> ServingConfig:
    """``serving.yaml`` of the project; without one, the champion of its only model.

    Raises:
        UsageError: no serving.yaml and not exactly one registered model.
    """
    from tessera.errors import UsageError
    from tessera.serving.config import ServedModel, ServingConfig, load_serving_config

    config = load_serving_config(root)
    if config is not None:
        return config
    names = registry.names()
    if len(names) != 1:
        raise UsageError(
            "no serving.yaml, and "
            + (
                "no model is registered: register one (a `register` stage) first"
                if not names
                else f"{len(names)} models are registered ({', '.join(names)})"
            )
            + "; write serving.yaml naming the model to serve, e.g. `models: [{name: "
            + (names[0] if names else "churn")
            + ", alias: champion}]`"
        )
    return ServingConfig(models=[ServedModel(name=names[0])])


def serve(
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    workers: int = WorkersOpt,
) -> None:
    """Serve the registered model over HTTP: /predict, /invocations, /health, /ready."""
    import os
    import signal
    import tempfile

    import uvicorn

    from tessera.cli.model_cmds import open_registry
    from tessera.serving.app import ENV_VAR, create_app, encode_spec

    registry = open_registry()  # changes into the project root
    config = serving_config(Path.cwd(), registry)
    served = config.models[0]
    host = host or config.host
    port = config.port if port is None else port
    with tempfile.TemporaryDirectory(prefix="tessera-serve-") as tmp:
        info, model_dir = registry.download(f"{served.name}@{served.alias}", Path(tmp))
        details: dict[str, Any] = info.to_dict()
        typer.echo(
            f"Serving {info.name}/{info.version} (@{served.alias}) on http://{host}:{port} "
            f"({workers} worker{'s' if workers != 1 else ''}); Ctrl+C stops it."
        )
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "http": "httptools",
            "loop": "uvloop",
            "log_level": "warning",
        }
        for stop in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises them once shut down
            signal.signal(stop, _stopped)
        if workers == 1:
            uvicorn.run(create_app(model_dir, details, config), workers=1, **options)
        else:
            os.environ[ENV_VAR] = encode_spec(model_dir, details, config)
            uvicorn.run("tessera.serving.app:from_env", factory=True, workers=workers, **options)


def _stopped(signum: int, frame: Any) -> None:
    """A stop signal after a graceful shutdown: a normal end, exit status 0."""
    raise SystemExit(0)


def register(app: typer.Typer) -> None:
    """Add ``tessera serve``."""
    app.command()(serve)


if __name__ == "__main__":  # `python -m tessera.cli.serve_cmds`: the command alone
    import sys

    from tessera.errors import TesseraError

    try:
        typer.run(serve)
    except TesseraError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        sys.exit(exc.exit_code)
