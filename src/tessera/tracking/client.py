"""Experiment tracking with MLflow, behind one small adapter.

Transformations never import MLflow: the training stages call :class:`Tracker`, which owns the
tracking URI, the experiment and the conventions Tessera keeps in MLflow:

- one MLflow experiment per project (its name), created on first use; with the embedded default
  (SQLite ``mlflow.db`` in the state directory) its artifacts go to ``mlartifacts/`` beside it;
- every run is tagged with the pipeline run, the stage, its cache key, the code hash, the git
  commit and the version id of every input (:func:`lineage_tags`), so that a model found in the
  MLflow UI leads back to its data and code, and a version id leads to its MLflow run
  (:meth:`Tracker.find_run`);
- models are logged in MLflow's scikit-learn flavour with the skops format and an explicit list
  of trusted types; pip requirements are pinned from the installed versions instead of being
  inferred (which would load the model again in a subprocess).

MLflow imports lazily (it takes over a second) and only when something is tracked.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.errors import TesseraError
from tessera.pipeline.context import ProjectSettings, StageContext

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Tag names Tessera writes on MLflow runs and model versions.
TAG_PROJECT = "tessera.project"
TAG_PIPELINE_RUN = "tessera.pipeline_run"
TAG_STAGE = "tessera.stage"
TAG_STAGE_KEY = "tessera.stage_key"
TAG_CODE_HASH = "tessera.code_hash"
TAG_GIT_COMMIT = "tessera.git_commit"
TAG_INPUT = "tessera.input."  # + input reference, value: its version id
TAG_MODEL_VERSION = "tessera.model_version"  # version id of the model table
TAG_KIND = "tessera.kind"  # train, tune, trial
TAG_MODEL_URI = "tessera.model_uri"  # the model logged to the run
INSTALL_HINT = "install the training extra: pip install 'tessera[training]'"


class TrackingError(TesseraError):
    """The tracking server cannot be reached (exit code 1)."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when an HTTP tracking server does not answer its health check.

    MLflow's client retries a refused connection with backoff for minutes before giving up;
    one quick probe turns that into an immediate, clear error.

    Raises:
        TrackingError: the server does not answer.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (a proxy may not route /health): let MLflow talk to it
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"the MLflow tracking server {uri} (stores.tracking in tessera.yaml) is "
            f"unreachable: {reason}"
        ) from None


@contextmanager
def sqlite_creation_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock while a library creates (or migrates) the SQLite database of
    ``url``: MLflow and Optuna run Alembic migrations on first use, and two stages (or trial
    workers) doing it at once in a fresh project race in them. Other URLs: no lock."""
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = Path(url.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lineage_tags(context: StageContext | None) -> dict[str, str]:
    """The tags that tie an MLflow run to the pipeline run, stage, inputs and commit."""
    if context is None:
        return {}
    tags = {
        TAG_PROJECT: context.project.name,
        TAG_PIPELINE_RUN: context.run_id,
        TAG_STAGE: context.stage,
        TAG_STAGE_KEY: context.key,
        TAG_CODE_HASH: context.code_hash,
    }
    for ref, version in context.inputs.items():
        tags[TAG_INPUT + ref] = version
    commit = context.git_commit
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        tags["mlflow.source.git.commit"] = commit
    return tags


def _quiet() -> None:
    """MLflow logs database migrations, environment guesses (this venv has no pip) and download
    progress bars: not for our users."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Tracker:
    """MLflow tracking and registry for one project.

    Args:
        uri: the tracking URI (also used as the registry URI).
        experiment: the experiment's name.
        artifact_root: where the experiment keeps artifacts when it is created here (the
            embedded store); None lets the tracking server decide.
    """

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    @classmethod
    def for_project(cls, settings: ProjectSettings) -> Tracker:
        embedded = settings.tracking_uri.startswith("sqlite:")
        root = Path(settings.state_dir) / "mlartifacts" if embedded else None
        return cls(settings.tracking_uri, settings.name, root)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            try:
                import mlflow
            except ImportError:
                raise ImportError(f"experiment tracking needs MLflow: {INSTALL_HINT}") from None
            _quiet()
            check_reachable(self.uri)
            client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            with sqlite_creation_lock(self.uri):
                client.search_experiments(max_results=1)  # creates and migrates an SQLite DB
            self._client = client
        return self._client

    @property
    def experiment_id(self) -> str:
        """The project's experiment, created on first use."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                location = self.artifact_root.resolve().as_uri() if self.artifact_root else None
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=location
                    )
                except Exception:  # created meanwhile by a parallel worker
                    again = self.client.get_experiment_by_name(self.experiment)
                    if again is None:
                        raise
                    self._experiment_id = again.experiment_id
        return self._experiment_id

    # -- runs ----------------------------------------------------------------------------------
    def start_run(
        self, name: str, tags: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> str:
        """Create a run (nested under ``parent`` when given); returns its id."""
        all_tags = dict(tags or {})
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        """Log params, metrics and tags in one batch (non-finite metrics are left out)."""
        import math
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        batch_params = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        batch_metrics = [
            Metric(k, float(v), now, step)
            for k, v in (metrics or {}).items()
            if v is not None and math.isfinite(float(v))
        ]
        batch_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(batch_params), 1), 100):  # MLflow: at most 100 params a call
            self.client.log_batch(
                run_id,
                metrics=batch_metrics if i == 0 else [],
                params=batch_params[i : i + 100],
                tags=batch_tags if i == 0 else [],
            )

    def log_artifacts(self, run_id: str, directory: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextmanager
    def run(
        self, name: str, tags: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED when the block raises."""
        run_id = self.start_run(name, tags, parent=parent)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id)

    def find_run(self, tag: str, value: str) -> str | None:
        """The newest finished run of the project's experiment with ``tag == value``."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}` = '{value}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return str(found[0].info.run_id) if found else None

    # -- models ----------------------------------------------------------------------------------
    def log_model(
        self,
        run_id: str,
        pipeline: Any,
        example: Any,
        *,
        trusted_types: Sequence[str],
        requirements: Sequence[str],
    ) -> str:
        """Log a fitted scikit-learn pipeline to ``run_id`` as its ``model``; returns its URI.

        The model is saved in MLflow's scikit-learn flavour, serialized with skops (never
        pickle) with ``trusted_types`` as its reviewed list, with a signature inferred from
        ``example`` (a few input rows) and the pipeline's predictions on them, and that example.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        # Pandas categories are declared as strings: that is what a client sends (MLflow has
        # no categorical type, and its schema check refuses a category column anyway).
        categories = [c for c in example.columns if str(example[c].dtype) == "category"]
        example = example.astype(dict.fromkeys(categories, "object"))
        with warnings.catch_warnings():  # "integer columns cannot hold missing values"
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(example, pipeline.predict(example))
        with self.global_uri(), mlflow.start_run(run_id=run_id):
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                serialization_format="skops",
                skops_trusted_types=list(trusted_types),
                signature=signature,
                input_example=example,
                pip_requirements=list(requirements),
            )
        self.client.set_tag(run_id, TAG_MODEL_URI, str(info.model_uri))
        return str(info.model_uri)

    def model_uri(self, run_id: str) -> str | None:
        """The URI of the model logged to a run (recorded by :meth:`log_model`)."""
        return self.client.get_run(run_id).data.tags.get(TAG_MODEL_URI)

    def download_model(self, model_uri: str, into: Path) -> Path:
        """A local copy of a logged model's directory."""
        from mlflow.artifacts import download_artifacts

        into.mkdir(parents=True, exist_ok=True)
        with self.global_uri():
            return Path(download_artifacts(artifact_uri=model_uri, dst_path=str(into)))

    @contextmanager
    def global_uri(self) -> Iterator[None]:
        """MLflow's fluent API (``log_model``, ``download_artifacts``) reads the process-wide
        tracking and registry URIs: set them to this tracker's for the call only."""
        import mlflow

        self.client  # noqa: B018  (checks the server, creates the store)
        before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        # set_*_uri also write MLFLOW_*_URI into os.environ: restore those exactly, or every
        # process started afterwards (a server, `mlflow models serve`) inherits the defaults
        # MLflow resolved here, relative to this working directory.
        environ = {name: os.environ.get(name) for name in _URI_VARIABLES}
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before[0])
            mlflow.set_registry_uri(before[1])
            for name, value in environ.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _param_text(value: Any) -> str:
    """MLflow params are strings of at most 6000 characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
