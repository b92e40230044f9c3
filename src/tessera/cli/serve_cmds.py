"""``tessera serve``: the HTTP prediction API of the project's registered model.

Start-up stays light: uvicorn, Starlette and pandas are imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import socket

    from tessera.registry.models import ModelRegistry
    from tessera.serving.config import ServingConfig

HostOpt = typer.Option(None, "--host", help="Address to listen on (default: serving.yaml's).")
PortOpt = typer.Option(
    None, "--port", min=0, max=65535, help="Port to listen on (default: serving.yaml's)."
)
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
    """Serve the registered models over HTTP: predictions, feedback, metrics, rollouts."""
    import os
    import signal
    import tempfile

    import uvicorn

    from tessera.cli.model_cmds import open_registry
    from tessera.serving.admin import admin_token
    from tessera.serving.app import ENV_VAR, create_app, encode_spec
    from tessera.serving.metrics import enable_multiprocess

    registry = open_registry()  # changes into the project root
    root = Path.cwd()
    config = serving_config(root, registry)
    admin_token(config.admin, root)  # a token file that cannot be read: exit 2 before serving
    host = host or config.host
    port = config.port if port is None else port
    with tempfile.TemporaryDirectory(prefix="tessera-serve-") as tmp:
        initial: dict[str, tuple[dict[str, Any], Path]] = {}
        served = []
        for model in config.models:  # fetched and hash-checked once, before listening
            info, model_dir = registry.download(
                f"{model.name}@{model.alias}", Path(tmp) / model.name
            )
            initial[model.name] = (info.to_dict(), model_dir)
            served.append(f"{info.name}/{info.version} (@{model.alias})")
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "http": "httptools",
            "loop": "uvloop",
            "log_level": "warning",
            "access_log": False,  # one logger call per request, and nothing shown at warning
            "timeout_graceful_shutdown": 30,
            # uvicorn replaces a worker that misses its health ping for this long, losing its
            # requests in flight: 5 s (the default) is too short for a worker busy loading a
            # model on a loaded machine
            "timeout_worker_healthcheck": 60,
        }
        if workers == 1:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own registry
            server_config = uvicorn.Config(create_app(root, config, initial), **options)
        else:
            enable_multiprocess(Path(tmp) / "metrics")  # one set of metrics over the workers
            os.environ[ENV_VAR] = encode_spec(root, config, initial)
            server_config = uvicorn.Config(
                "tessera.serving.app:from_env", factory=True, workers=workers, **options
            )
        # Listening (one worker) or holding the port (several) before the banner: its port is
        # the real one (``--port 0``: the one the system picked).
        backlog = server_config.backlog
        if workers == 1:
            sock = _bind(host, port, listen=True, backlog=backlog)
        else:  # the port must be free (a plain bind), then held for the workers' sockets
            with _bind(host, port, listen=False, backlog=backlog) as probe:
                port = int(probe.getsockname()[1])
            sock = _bind(host, port, listen=False, backlog=backlog, reuse_port=True)
        port = int(sock.getsockname()[1])
        typer.echo(
            f"Serving {', '.join(served)} on http://{_url_host(host)}:{port} "
            f"({workers} worker{'s' if workers != 1 else ''}); Ctrl+C stops it."
        )
        for stop in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises them once shut down
            signal.signal(stop, _stopped)
        if workers == 1:
            server = uvicorn.Server(server_config)
            server.run(sockets=[sock])
            if not server.started:  # uvicorn logged why
                raise SystemExit(1)
        else:
            _workers(server_config, host, port).run()
            _say_stopped()
        sock.close()


def _workers(config: Any, host: str, port: int) -> Any:
    """uvicorn's supervisor of worker processes, except that each worker gets a socket of its
    own on the port, bound with ``SO_REUSEPORT``: the kernel spreads new connections over the
    workers' sockets. On one shared socket, the first worker to wake up accepted a burst of
    connections (16 of a client's 16 measured), leaving the other worker idle."""
    from uvicorn.supervisors import Multiprocess

    class Workers(Multiprocess):
        @property
        def sockets(self) -> list[socket.socket]:
            # Read once per worker started; the socket lives as long as that worker's
            # Process object, so a replaced worker's socket leaves the port's group.
            return [_bind(host, port, listen=True, backlog=config.backlog, reuse_port=True)]

        @sockets.setter
        def sockets(self, value: list[socket.socket]) -> None:
            pass

    return Workers(config, [])


def _bind(
    host: str, port: int, *, listen: bool, backlog: int, reuse_port: bool = False
) -> socket.socket:
    """A socket bound to the address: listening (a client that connects before a worker
    accepts waits in the backlog instead of being refused), or only holding the port; with
    ``reuse_port``, one of the workers' group of sockets on the port (``SO_REUSEPORT``).

    Raises:
        UsageError: the address cannot be listened on (taken, not this machine's).
    """
    import socket

    from tessera.errors import UsageError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if listen:
        sock.listen(backlog)
    sock.set_inheritable(True)  # the workers get it
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _stopped(signum: int, frame: Any) -> None:
    """A stop signal after a graceful shutdown: a normal end, exit status 0."""
    _say_stopped()
    raise SystemExit(0)


def _say_stopped() -> None:
    typer.echo("Stopped: the requests in flight were answered and the logs flushed.")


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
