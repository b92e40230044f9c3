"""The model registry: MLflow's Model Registry plus Tessera's audit trail and checks.

Versions, descriptions, tags and aliases live in MLflow's registry (so the MLflow UI and clients
see them). Tessera adds:

- idempotent registration: a model table (by version id) is registered once per name; running
  the pipeline again finds the existing version instead of adding a duplicate;
- the sha256 of the model's files, recorded as the version tag ``tessera.sha256`` at registration
  and checked by :meth:`ModelRegistry.load` (and by the server) before anything is deserialized;
- an audit trail in the metadata store (``model_events``): every registration, promotion and
  rollback with who, when, why and the numbers behind it. ``rollback`` replays it to find the
  previous champion.

References: ``NAME@ALIAS`` or ``NAME/VERSION`` (``NAME`` alone: its champion).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import re
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.errors import TesseraError, UsageError
from tessera.tracking import Tracker
from tessera.tracking.client import TAG_MODEL_VERSION

if TYPE_CHECKING:
    from tessera.data.metadata import MetadataStore

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_SHA256 = "tessera.sha256"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_REF = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))?$")


class RegistryError(TesseraError):
    """A model, version or alias that does not exist, or a refused registry operation."""

    exit_code = 2


class ModelHashError(TesseraError):
    """A registered model's files do not match the hash recorded at registration."""

    exit_code = 1


@dataclass(frozen=True)
class Ref:
    """A parsed model reference."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.version:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias or CHAMPION}"


def parse_ref(text: str) -> Ref:
    """``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (its champion).

    Raises:
        UsageError: anything else.
    """
    m = _REF.match(text.strip())
    if not m or not NAME.match(m["name"]):
        raise UsageError(
            f"'{text}' is not a model reference: use NAME@ALIAS (e.g. churn@champion) or "
            "NAME/VERSION (e.g. churn/3)"
        )
    return Ref(m["name"], m["alias"], m["version"])


@dataclass
class VersionInfo:
    """A registered model version as Tessera shows it."""

    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    source: str
    created: float
    description: str
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def model_version(self) -> str | None:
        """The version id of the model table it was registered from."""
        return self.tags.get(TAG_MODEL_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "source": self.source,
            "created": self.created,
            "description": self.description,
            "model_version": self.model_version,
            "task": self.tags.get("tessera.task"),
            "target": self.tags.get("tessera.target"),
            "classes": json.loads(self.tags.get("tessera.classes") or "null"),
            "sha256": self.tags.get(TAG_SHA256),
            "tags": self.tags,
            "metrics": self.metrics,
        }


def files_sha256(directory: Path) -> str:
    """One sha256 over a model directory: every file's relative path and bytes, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def actor() -> str:
    """Who is doing this: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ModelRegistry:
    """The project's registered models.

    Args:
        tracker: the MLflow adapter (its URI is also the registry URI).
        records: the metadata store holding the audit trail.
    """

    def __init__(self, tracker: Tracker, records: MetadataStore) -> None:
        self.tracker = tracker
        self.records = records

    @property
    def _client(self) -> Any:
        return self.tracker.client

    # -- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(m.name for m in self._client.search_registered_models())

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, newest first."""
        self._require_model(name)
        found = self._client.search_model_versions(f"name = '{name}'")
        aliases = self._aliases(name)
        out = [self._info(v, aliases) for v in found]
        return sorted(out, key=lambda v: -int(v.version))

    def get(self, ref: Ref | str, *, metrics: bool = False) -> VersionInfo:
        """The version a reference names.

        Raises:
            RegistryError: no such model, version or alias.
        """
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        self._require_model(ref.name)
        from mlflow.exceptions import MlflowException

        try:
            if ref.version:
                mv = self._client.get_model_version(ref.name, ref.version)
            else:
                mv = self._client.get_model_version_by_alias(ref.name, ref.alias or CHAMPION)
        except MlflowException:
            known = ", ".join(f"@{a}" for a in sorted(self._aliases(ref.name))) or "none"
            what = f"version {ref.version}" if ref.version else f"alias @{ref.alias or CHAMPION}"
            raise RegistryError(
                f"model '{ref.name}' has no {what} (aliases: {known}; `tessera models show "
                f"{ref.name}` lists its versions)"
            ) from None
        info = self._info(mv, self._aliases(ref.name))
        if metrics and info.run_id:
            with contextlib.suppress(MlflowException):
                info.metrics = dict(self._client.get_run(info.run_id).data.metrics)
        return info

    def alias(self, name: str, alias: str = CHAMPION) -> str | None:
        """The version an alias points to, or None."""
        return self._aliases(name).get(alias)

    def events(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        return self.records.model_events(name, alias=alias)

    def _require_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            from tessera.config.errors import did_you_mean

            names = self.names()
            hint = did_you_mean(name, names)
            raise RegistryError(
                f"no registered model '{name}'"
                + (f" ({hint})" if hint else f" (registered: {', '.join(names) or 'none'})")
            ) from None

    def _aliases(self, name: str) -> dict[str, str]:
        return {
            a: str(v) for a, v in (self._client.get_registered_model(name).aliases or {}).items()
        }

    @staticmethod
    def _info(mv: Any, aliases: Mapping[str, str]) -> VersionInfo:
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            aliases=sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
            run_id=mv.run_id,
            source=mv.source,
            created=(mv.creation_timestamp or 0) / 1000,
            description=mv.description or "",
            tags=dict(mv.tags or {}),
        )

    # -- registering -------------------------------------------------------------------------
    def find(self, name: str, model_version: str) -> VersionInfo | None:
        """The version of ``name`` registered from a model table version, if any."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._client.search_model_versions(
                f"name = '{name}' and tags.`{TAG_MODEL_VERSION}` = '{model_version}'"
            )
        except MlflowException:
            return None
        if not found:
            return None
        return self._info(found[0], self._aliases(name))

    def register(
        self,
        name: str,
        *,
        run_id: str,
        model_uri: str,
        model_version: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        pipeline_run: str | None = None,
    ) -> tuple[VersionInfo, bool]:
        """Register a logged model (once per model table version); returns it and whether it
        is new. The sha256 of its files is recorded as ``tessera.sha256``."""
        from mlflow.exceptions import MlflowException

        existing = self.find(name, model_version)
        if existing is not None:
            return existing, False
        with tempfile.TemporaryDirectory(prefix="tessera-register-") as tmp:
            digest = files_sha256(self.tracker.download_model(model_uri, Path(tmp)))
        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)
        all_tags = {**(tags or {}), TAG_MODEL_VERSION: model_version, TAG_SHA256: digest}
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None
        with self.tracker.global_uri():  # MLflow resolves the logged model through it
            mv = self._client.create_model_version(
                name,
                model_uri,
                run_id=run_id,
                tags=all_tags,
                description=description,
                model_id=model_id,  # a tracking server requires it for a models:/ source
            )
        self.records.record_model_event(
            name,
            "register",
            version=str(mv.version),
            actor=actor(),
            reason=description,
            details={"model_version": model_version, "run_id": run_id, "sha256": digest},
            run_id=pipeline_run,
        )
        return self._info(mv, self._aliases(name)), True

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        if alias in self._aliases(name):
            self._client.delete_registered_model_alias(name, alias)

    # -- promotion -----------------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: str,
        *,
        alias: str = CHAMPION,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        who: str | None = None,
        pipeline_run: str | None = None,
    ) -> str | None:
        """Point ``alias`` at ``version`` and record it; returns the version it pointed to.

        Promoting to ``champion`` also clears ``challenger`` when it pointed at this version.

        Raises:
            RegistryError: no such version.
        """
        self.get(Ref(name, version=version))
        previous = self.alias(name, alias)
        self.set_alias(name, alias, version)
        if alias == CHAMPION and self.alias(name, CHALLENGER) == version:
            self.delete_alias(name, CHALLENGER)
        self.records.record_model_event(
            name,
            "promote",
            alias=alias,
            version=version,
            previous=previous,
            actor=who or actor(),
            reason=reason,
            details=dict(details or {}),
            run_id=pipeline_run,
        )
        return previous

    def previous_champion(self, name: str, alias: str = CHAMPION) -> str | None:
        """The version ``alias`` pointed to before its current one, replaying the audit trail
        (a rollback pops the version it leaves)."""
        stack: list[str] = []
        for event in self.records.model_events(name, alias=alias):
            if event["action"] == "promote":
                stack.append(str(event["version"]))
            elif event["action"] == "rollback" and stack:
                stack.pop()
        current = self.alias(name, alias)
        while stack and stack[-1] != current:  # moved outside Tessera: trust the registry
            stack.pop()
        return stack[-2] if len(stack) >= 2 else None

    def rollback(
        self, name: str, *, alias: str = CHAMPION, reason: str | None = None
    ) -> tuple[str, str]:
        """Move ``alias`` back to the version it had before; returns (from, to).

        Raises:
            RegistryError: the alias is not set, or there is no earlier version to go back to.
        """
        self._require_model(name)
        current = self.alias(name, alias)
        if current is None:
            raise RegistryError(f"model '{name}' has no @{alias} to roll back")
        target = self.previous_champion(name, alias)
        if target is None:
            raise RegistryError(
                f"@{alias} of '{name}' has no earlier version to roll back to (version "
                f"{current} is the first); promote another version instead"
            )
        self.set_alias(name, alias, target)
        self.records.record_model_event(
            name,
            "rollback",
            alias=alias,
            version=target,
            previous=current,
            actor=actor(),
            reason=reason,
            details={"from": current, "to": target},
        )
        return current, target

    # -- loading -----------------------------------------------------------------------------
    def download(self, ref: Ref | str, into: Path) -> tuple[VersionInfo, Path]:
        """A local copy of a version's model directory, its hash checked.

        Raises:
            ModelHashError: the files differ from what was registered.
        """
        info = self.get(ref)
        directory = self.tracker.download_model(info.source, into)
        check_hash(info, directory)
        return info, directory

    def load(self, ref: Ref | str) -> tuple[VersionInfo, Any]:
        """The fitted pipeline of a registered version, after checking its files' hash and
        refusing any type outside the reviewed trusted list (skops, never pickle)."""
        from tessera.training.errors import UntrustedModelError

        with tempfile.TemporaryDirectory(prefix="tessera-load-") as tmp:
            info, directory = self.download(ref, Path(tmp))
            return info, load_directory(directory, UntrustedModelError)


def project_registry(root: Path | None = None) -> ModelRegistry:
    """The registry of the project at ``root`` (default: around the working directory), with its
    tracking server or embedded store and its metadata store (the audit trail)."""
    from tessera.config.project import load_project
    from tessera.data.metadata import MetadataStore
    from tessera.pipeline.workspace import project_settings

    settings = project_settings(load_project(root))
    return ModelRegistry(Tracker.for_project(settings), MetadataStore(settings.metadata_url))


def check_hash(info: VersionInfo, directory: Path) -> None:
    """Refuse a model directory whose files do not hash to what was registered."""
    expected = info.tags.get(TAG_SHA256)
    actual = files_sha256(directory)
    if expected is None:
        raise ModelHashError(
            f"model {info.name}/{info.version} has no recorded hash ({TAG_SHA256}); it was not "
            "registered by Tessera: register it again to use it"
        )
    if actual != expected:
        raise ModelHashError(
            f"model {info.name}/{info.version}: its files do not match the hash recorded at "
            f"registration (recorded {expected[:16]}…, now {actual[:16]}…); refusing to load it"
        )


def load_directory(directory: Path, untrusted_error: type[Exception]) -> Any:
    """Load an MLflow scikit-learn model directory saved with skops, trusting only the
    reviewed types (:data:`tessera.training.TRUSTED_TYPES`)."""
    import skops.io as sio

    from tessera.training.modelio import TRUSTED_TYPES

    files = list(directory.glob("*.skops"))
    if len(files) != 1:
        raise RegistryError(f"{directory} holds no skops model file (model.skops)")
    untrusted = [t for t in sio.get_untrusted_types(file=files[0]) if t not in TRUSTED_TYPES]
    if untrusted:
        raise untrusted_error(
            f"the model contains types that are not trusted: {', '.join(untrusted)}"
        )
    return sio.load(files[0], trusted=sio.get_untrusted_types(file=files[0]))
