"""Model bundles: a registered model packaged to run anywhere Python runs, without Tessera.

``tessera models package NAME@ALIAS --out DIR`` writes a bundle with :func:`write_bundle`::

    DIR/
      model/               the MLflow model directory, unchanged (mlflow.pyfunc.load_model works)
      manifest.json        registry metadata + the sha256 of every file of model/ (`files`)
      trusted_types.json   the reviewed types skops may construct when loading the model
      requirements.txt     pinned (==) packages serve.py needs: no MLflow, no Tessera
      serve.py             verify + predict (CSV/JSON) + HTTP server (stdlib + requirements)
      serving.yaml         serving configuration: model, version, alias, features, port, limits
      Dockerfile           python:3.X-slim, non-root, HEALTHCHECK on /health
      .dockerignore
      README.md            what the bundle is and how to run it

``serve.py`` refuses to start (exit status 2) when a file of ``model/`` is missing, altered or
not listed in ``manifest.json``, or when the skops archive names a type outside
``trusted_types.json``: nothing is deserialized before both checks pass.

The requirements are the packages ``serve.py`` imports (scikit-learn, skops, numpy, pandas and
the packages of the modules named in the model's skops archive, e.g. LightGBM) and everything
they depend on, each pinned to the version installed here, the one the model was trained and
checked with. MLflow and Tessera are never included.

Docker is not available where Tessera's tests run, so the Dockerfile is checked statically by
:func:`check_dockerfile` instead of by building the image.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import string
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = 1
#: The port the bundle's server listens on in its image.
PORT = 8080
#: Rows accepted in one ``POST /invocations`` request, and bytes of one request body.
MAX_BATCH_ROWS = 10_000
MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: Distributions ``serve.py`` imports whatever the model (a skops pipeline read into pandas).
BASE_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "pandas", "scipy", "joblib", "threadpoolctl")
#: Never pinned: the bundle must run without them.
EXCLUDED = frozenset({"mlflow", "mlflow-skinny", "mlflow-tracing", "tessera"})
#: Debian packages a distribution's wheels need at run time but do not ship (slim images lack
#: them): LightGBM's wheel links the system OpenMP runtime.
SYSTEM_PACKAGES: Mapping[str, tuple[str, ...]] = {"lightgbm": ("libgomp1",)}
#: The instructions a Dockerfile may use.
DOCKERFILE_INSTRUCTIONS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)
_TEMPLATE = "bundle_template"
_MODEL_DIR = "model"


def write_bundle(
    model_dir: Path,
    out: Path,
    *,
    name: str,
    version: str,
    manifest: dict[str, Any],
    trusted_types: Sequence[str],
) -> Path:
    """Write a self-contained bundle of an MLflow scikit-learn model (skops format) to ``out``.

    The bundle is assembled in a temporary directory next to ``out`` and moved into place at
    the end, so a failure leaves nothing behind.

    Args:
        model_dir: a local MLflow model directory written by ``mlflow.sklearn.save_model(...,
            serialization_format="skops")``.
        out: the bundle directory to create; it must not exist or be empty.
        name: the registered model's name.
        version: the registered version.
        manifest: the registry's metadata of the version (aliases, metrics, data versions, git
            commit, ``features``, ``task``, ``classes``...), written as ``manifest.json`` with
            ``files`` (path inside ``model/`` -> sha256 of the bundled file) and ``bundle``
            (format, model file, input schema, Python and package versions) added. A ``files``
            mapping already in ``manifest`` must match ``model_dir``. ``features`` (the model's
            input columns in order: names, or objects with a ``name``) defaults to the columns
            the pipeline was fitted on, else to the signature's. ``alias`` (else the first of
            ``aliases``) names the alias shown in ``serving.yaml`` and the README.
        trusted_types: the reviewed types skops may construct beyond its defaults. The model
            must not need any other; those it needs are written as ``trusted_types.json``.

    Returns:
        ``out``.

    Raises:
        ValueError: ``out`` exists and is not an empty directory; ``model_dir`` is not an MLflow
            skops model, does not match ``manifest`` (name, version, files or features), or
            holds types outside ``trusted_types``; the model uses a module that is not
            installed or cannot be bundled.
    """
    model_dir = Path(model_dir)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; choose a new directory for the bundle")
    mlmodel = _read_mlmodel(model_dir)
    model_file = _skops_file(model_dir, mlmodel)
    trusted = _needed_types(model_dir / model_file, trusted_types)
    pipeline = _load_checked(model_dir / model_file, trusted)
    schema = _input_schema(mlmodel)
    info = _manifest(manifest, name=name, version=version, schema=schema, pipeline=pipeline)
    pins, via = serving_requirements(model_dir / model_file)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        shutil.copytree(model_dir, tmp / _MODEL_DIR, symlinks=False)
        _readable(tmp / _MODEL_DIR)  # the copy keeps a temporary directory's 0700
        files = _hash_files(tmp / _MODEL_DIR)
        recorded = info.get("files")
        if recorded is not None and recorded != files:
            differ = sorted(set(recorded) ^ set(files)) + sorted(
                k for k in set(recorded) & set(files) if recorded[k] != files[k]
            )
            raise ValueError(
                f"{model_dir} does not match the manifest's `files`: {', '.join(differ)}"
            )
        info["files"] = files
        info["bundle"] = {
            "format": BUNDLE_FORMAT,
            "model_dir": _MODEL_DIR,
            "model_file": model_file,
            "input_schema": schema,
            "python": ".".join(map(str, sys.version_info[:3])),
            "requirements": pins,
            "created_by": f"tessera {_tessera_version()}",
        }
        _write_json(tmp / "manifest.json", info)
        _write_json(tmp / "trusted_types.json", trusted)
        _write(tmp / "requirements.txt", _requirements_txt(name, version, pins, via))
        _write(tmp / "serve.py", _template("serve.py"))
        (tmp / "serve.py").chmod(0o755)
        alias = _alias(info)
        features = _feature_names(info["features"])
        _write(tmp / "serving.yaml", _serving_yaml(name, version, alias, features, info))
        values = _template_values(name, version, alias, features, info, pins)
        _write(tmp / "Dockerfile", _render("Dockerfile.tmpl", values))
        _write(tmp / ".dockerignore", _template("dockerignore.tmpl"))
        _write(tmp / "README.md", _render("README.md.tmpl", values))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --- the model -------------------------------------------------------------------------------


def _read_mlmodel(model_dir: Path) -> dict[str, Any]:
    import yaml

    path = model_dir / "MLmodel"
    if not path.is_file():
        raise ValueError(f"{model_dir} is not an MLflow model directory (no MLmodel file)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not an MLmodel file")
    return data


def _skops_file(model_dir: Path, mlmodel: Mapping[str, Any]) -> str:
    """The skops archive of an MLflow sklearn model (path inside ``model_dir``)."""
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        raise ValueError(f"{model_dir} is not a scikit-learn MLflow model (no sklearn flavor)")
    if flavor.get("serialization_format") != "skops":
        raise ValueError(
            f"{model_dir} is serialized as {flavor.get('serialization_format')!r}; bundles need "
            "the skops format (mlflow.sklearn.save_model(..., serialization_format='skops'))"
        )
    model_file = str(flavor.get("pickled_model", "model.skops"))
    if not (model_dir / model_file).is_file():
        raise ValueError(f"{model_dir / model_file} does not exist")
    return model_file


def _needed_types(path: Path, trusted: Iterable[str]) -> list[str]:
    """The types of ``trusted`` the skops archive needs (the bundle trusts no more).

    Raises:
        ValueError: the archive needs a type outside ``trusted``.
    """
    import skops.io as sio

    needed = set(sio.get_untrusted_types(file=path))
    untrusted = sorted(needed - set(trusted))
    if untrusted:
        raise ValueError(
            f"{path.name} contains types outside trusted_types: {', '.join(untrusted)}; the "
            "bundle's server would refuse to load it"
        )
    return sorted(needed)


def _load_checked(path: Path, trusted: Sequence[str]) -> Any:
    """The model (its types already checked against ``trusted``)."""
    import skops.io as sio

    return sio.load(path, trusted=list(trusted))


def _input_schema(mlmodel: Mapping[str, Any]) -> list[dict[str, str]]:
    """The named columns of the MLflow signature's inputs: ``[{"name", "type"}]``."""
    signature = mlmodel.get("signature") or {}
    inputs = signature.get("inputs")
    if not inputs:
        return []
    columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    return [
        {"name": str(c["name"]), "type": str(c.get("type", ""))}
        for c in columns
        if isinstance(c, dict) and "name" in c
    ]


def _manifest(
    manifest: Mapping[str, Any],
    *,
    name: str,
    version: str,
    schema: list[dict[str, str]],
    pipeline: Any,
) -> dict[str, Any]:
    """A copy of the registry's manifest, checked against the model, with name and version."""
    info = dict(manifest)
    for key, value in (("name", name), ("version", version)):
        if key in info and str(info[key]) != str(value):
            raise ValueError(f"the manifest's {key} is {info[key]!r}, not {value!r}")
        info[key] = value
    fitted = getattr(pipeline, "feature_names_in_", None)
    if "features" not in info:
        if fitted is not None:
            info["features"] = [str(f) for f in fitted]
        elif schema:
            info["features"] = [c["name"] for c in schema]
        else:
            raise ValueError(
                "the manifest has no `features`, and neither the fitted model nor its signature "
                "names its input columns"
            )
    features = _feature_names(info["features"])
    if fitted is not None and [str(f) for f in fitted] != features:
        raise ValueError(
            f"the manifest's features {features} are not the model's input columns in order "
            f"{[str(f) for f in fitted]}"
        )
    files = info.get("files")
    if files is not None and not isinstance(files, dict):
        raise ValueError("the manifest's `files` must map paths to sha256")
    return info


def _feature_names(features: Any) -> list[str]:
    if not isinstance(features, list) or not features:
        raise ValueError("the manifest's `features` must be a non-empty list")
    names = []
    for f in features:
        if isinstance(f, dict):
            if "name" not in f:
                raise ValueError(f"a feature without a name in the manifest: {f}")
            names.append(str(f["name"]))
        else:
            names.append(str(f))
    return names


def _hash_files(directory: Path) -> dict[str, str]:
    """Path (relative, POSIX) -> sha256 of every file under ``directory``, sorted."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        files[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return files


# --- requirements ----------------------------------------------------------------------------


def serving_requirements(model_file: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The distributions needed to load and run a skops model with ``serve.py``, pinned.

    The roots are :data:`BASE_REQUIREMENTS` and the distributions of the modules the archive
    names (``lightgbm`` for a LightGBM estimator); their dependencies (for this platform and
    Python, extras excluded) are added, each at its installed version.

    Returns:
        distribution name -> installed version, sorted by name; and for each dependency that is
        not a root, the distributions that require it.

    Raises:
        ValueError: a module of the model belongs to no installed distribution, or to one that
            cannot be bundled (MLflow, Tessera).
    """
    roots = list(BASE_REQUIREMENTS)
    for dist in _model_distributions(model_file):
        if dist not in roots:
            roots.append(dist)
    return _closure(roots)


def _model_distributions(model_file: Path) -> list[str]:
    """The distributions of the (non-stdlib) modules named in a skops archive."""
    with zipfile.ZipFile(model_file) as z:
        schema = json.loads(z.read("schema.json"))
    modules: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module = node.get("__module__")
            if isinstance(module, str):
                modules.add(module.split(".")[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    owners = importlib.metadata.packages_distributions()
    dists = []
    for module in sorted(modules - set(sys.stdlib_module_names) - {"builtins"}):
        names = owners.get(module)
        if not names:
            raise ValueError(
                f"the model uses module {module!r}, which no installed distribution provides"
            )
        for dist in names:
            if _canonical(dist) in EXCLUDED:
                raise ValueError(
                    f"the model uses module {module!r} from {dist}, which the bundle cannot "
                    "include: build the pipeline from scikit-learn (and LightGBM) objects only"
                )
            if dist not in dists:
                dists.append(dist)
    return dists


def _closure(roots: Iterable[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    via: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    roots = list(roots)
    todo = [(r, "") for r in roots]
    root_keys = {_canonical(r) for r in roots}
    while todo:
        wanted, parent = todo.pop(0)
        key = _canonical(wanted)
        if key in EXCLUDED:
            continue
        if key in names:
            if parent and key not in root_keys and parent not in via.setdefault(names[key], []):
                via[names[key]].append(parent)
            continue
        try:
            dist = importlib.metadata.distribution(wanted)
        except importlib.metadata.PackageNotFoundError:
            if not parent:
                raise ValueError(f"{wanted} is not installed; the bundle needs it") from None
            continue  # an optional dependency of this platform that is absent
        name = dist.metadata["Name"] or wanted
        names[key] = name
        pins[name] = dist.version
        if parent:
            via.setdefault(name, []).append(parent)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, name))
    ordered = sorted(pins, key=_canonical)
    return {n: pins[n] for n in ordered}, {n: sorted(via[n]) for n in ordered if n in via}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_txt(
    name: str, version: str, pins: Mapping[str, str], via: Mapping[str, list[str]]
) -> str:
    python = ".".join(map(str, sys.version_info[:3]))
    lines = [
        f"# What serve.py needs to load and run {name} version {version}, pinned to the versions",
        f"# the bundle was built with (Python {python}). pip install -r requirements.txt",
    ]
    for dist, pinned in pins.items():
        line = f"{dist}=={pinned}"
        if dist in via:
            line += f"  # via {', '.join(via[dist])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# --- text files ------------------------------------------------------------------------------


def _template(name: str) -> str:
    return (resources.files(__package__ or "tessera.registry") / _TEMPLATE / name).read_text(
        encoding="utf-8"
    )


def _render(name: str, values: Mapping[str, str]) -> str:
    return string.Template(_template(name)).substitute(values)


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, value: Any) -> None:
    _write(path, json.dumps(value, indent=2, default=_jsonable, allow_nan=False) + "\n")


def _jsonable(value: Any) -> Any:
    """numpy values, paths, dates and sets as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _alias(info: Mapping[str, Any]) -> str | None:
    alias = info.get("alias")
    if alias:
        return str(alias)
    aliases = info.get("aliases")
    if isinstance(aliases, list | tuple) and aliases:
        return str(aliases[0])
    return None


def _serving_yaml(
    name: str, version: str, alias: str | None, features: list[str], info: Mapping[str, Any]
) -> str:
    """YAML whose values are JSON, so serve.py reads it with the standard library."""
    values: dict[str, Any] = {
        "model": name,
        "version": version,
        "alias": alias,
        "task": info.get("task"),
        "features": features,
        "host": "0.0.0.0",
        "port": PORT,
        "max_batch_rows": MAX_BATCH_ROWS,
        "max_request_bytes": MAX_REQUEST_BYTES,
    }
    lines = [
        "# Serving configuration of this bundle, read by serve.py (command-line options win).",
        "# One `key: value` per line; values are JSON, which is also YAML.",
    ]
    lines += [f"{key}: {json.dumps(value, default=_jsonable)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _template_values(
    name: str,
    version: str,
    alias: str | None,
    features: list[str],
    info: Mapping[str, Any],
    pins: Mapping[str, str],
) -> dict[str, str]:
    apt = sorted({p for dist, pkgs in SYSTEM_PACKAGES.items() if dist in pins for p in pkgs})
    system = (
        "\n# Shared libraries the wheels link but do not ship.\n"
        "RUN apt-get update \\\n"
        f" && apt-get install --yes --no-install-recommends {' '.join(apt)} \\\n"
        " && rm -rf /var/lib/apt/lists/*\n"
        if apt
        else ""
    )
    image = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "model"
    ref = f"{name}@{alias}" if alias else f"{name}/{version}"
    blank = {"dataframe_split": {"columns": features, "data": [[None] * len(features)]}}
    example = shlex.quote(json.dumps(blank))
    if "serving_input_example.json" in info.get("files", {}):
        example = "@model/serving_input_example.json"
    return {
        "name": name,
        "version": version,
        "ref": ref,
        "image": f"{image}:{version}",
        "base_image": f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim",
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "port": str(PORT),
        "system_packages": system,
        "summary": _summary(name, version, alias, info),
        "metrics": _metrics(info.get("metrics")),
        "features": ", ".join(f"`{f}`" for f in features),
        "n_features": str(len(features)),
        "requirements": ", ".join(f"{d}=={v}" for d, v in pins.items() if d in _roots(pins)),
        "example": example,
        "max_batch_rows": str(MAX_BATCH_ROWS),
    }


def _roots(pins: Mapping[str, str]) -> set[str]:
    wanted = {_canonical(d) for d in (*BASE_REQUIREMENTS, *SYSTEM_PACKAGES)}
    return {d for d in pins if _canonical(d) in wanted}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _summary(name: str, version: str, alias: str | None, info: Mapping[str, Any]) -> str:
    rows = [("Model", name), ("Version", version)]
    if alias:
        rows.append(("Alias", alias))
    shown = {"name", "version", "alias", "metrics", "features", "files", "bundle", "tags"}
    if info.get("aliases") in ([alias], (alias,)):
        shown.add("aliases")
    for key, value in info.items():
        if key in shown or value in (None, "", [], {}):
            continue
        if key == "created" and isinstance(value, int | float):  # seconds since the epoch
            value = datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        rows.append((key.replace("_", " ").capitalize(), _cell(value)))
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows)])


def _metrics(metrics: Any) -> str:
    if not metrics:
        return "No metrics were recorded for this version."
    if not isinstance(metrics, dict):
        return _cell(metrics)
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat.append((prefix, value))

    walk("", metrics)
    return "\n".join(
        ["| Metric | Value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in flat)]
    )


def _tessera_version() -> str:
    from tessera._version import __version__

    return str(__version__)


# --- Dockerfile check ------------------------------------------------------------------------


def _readable(root: Path) -> None:
    """Directories 0755 and files 0644 below ``root``: the image runs as a non-root user."""
    os.chmod(root, 0o755)
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def check_dockerfile(path: Path) -> list[str]:
    """Problems of a Dockerfile found without Docker (an empty list: none found).

    Docker is not available where Tessera's tests run, so bundles are checked statically
    instead of by building the image. Checked: every instruction is a known one; the base
    image is pinned to a tag other than ``latest`` (or a digest); every ``COPY``/``ADD`` source
    exists relative to the Dockerfile's directory (the build context), inside it and not
    excluded by ``.dockerignore``; ``ADD`` fetches no URL; the final stage switches to a
    non-root ``USER`` before its ``CMD``, has ``EXPOSE`` and a ``HEALTHCHECK``, and its
    ``CMD``/``ENTRYPOINT`` use the exec (JSON array) form.

    Args:
        path: the Dockerfile.

    Returns:
        One message per problem, ``Dockerfile:LINE: ...``.

    Raises:
        OSError: the Dockerfile cannot be read.
    """
    path = Path(path)
    context = path.parent.resolve()
    ignore = _dockerignore(context / ".dockerignore")
    problems: list[str] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    stage: dict[str, Any] | None = None

    def problem(line: int | None, message: str) -> None:
        problems.append(f"{path.name}:{line}: {message}" if line else f"{path.name}: {message}")

    for line, instruction, rest in _instructions(path.read_text(encoding="utf-8")):
        if instruction not in DOCKERFILE_INSTRUCTIONS:
            problem(line, f"unknown instruction {instruction!r}")
            continue
        if instruction == "ARG" and stage is None:
            for arg in rest.split():
                key, _, default = arg.partition("=")
                args[key] = default.strip("\"'")
            continue
        if instruction == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = _substitute(words[0], args) if words else ""
            if not image:
                problem(line, "FROM without an image")
            elif "$" in image:
                problem(line, f"base image {words[0]} uses an unset ARG: cannot check its tag")
            elif image.lower() != "scratch" and image not in stages:
                message = _unpinned(image)
                if message:
                    problem(line, message)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            stage = {"user": None, "cmd": None, "expose": False, "healthcheck": False}
            continue
        if stage is None:
            problem(line, f"{instruction} before FROM")
            continue
        if instruction in ("COPY", "ADD"):
            for message in _copy_problems(instruction, rest, context, ignore):
                problem(line, message)
        elif instruction == "USER":
            stage["user"] = (line, rest.split()[0] if rest.split() else "")
        elif instruction == "EXPOSE":
            stage["expose"] = True
        elif instruction == "HEALTHCHECK":
            if rest.split()[:1] == ["NONE"] or not rest.strip():
                problem(line, "HEALTHCHECK NONE disables the health check")
            else:
                stage["healthcheck"] = True
        elif instruction in ("CMD", "ENTRYPOINT"):
            if not _exec_form(rest):
                problem(
                    line,
                    f'{instruction} in shell form: use the exec form, {instruction} ["prog", '
                    '"arg"] (a shell as PID 1 does not forward SIGTERM)',
                )
            if instruction == "CMD":
                stage["cmd"] = (line, stage["user"])

    if stage is None:
        problem(None, "no FROM instruction")
        return problems
    if stage["cmd"] is None:
        problem(None, "the final stage has no CMD")
    else:
        line, user = stage["cmd"]
        if user is None or _is_root(user[1]):
            problem(line, "CMD runs as root: add USER with a non-root user before it")
    if not stage["expose"]:
        problem(None, "no EXPOSE: declare the port the server listens on")
    if not stage["healthcheck"]:
        problem(None, "no HEALTHCHECK")
    return problems


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """``(line, INSTRUCTION, arguments)`` with continuations joined, comments and heredocs
    skipped."""
    lines = text.splitlines()
    out: list[tuple[int, str, str]] = []
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        i += 1
        if stripped.startswith("#") or (not stripped and not parts):
            continue  # comments (also inside continuations) and blank lines
        if not parts:
            start = i
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        logical = " ".join(p for p in parts if p)
        parts = []
        word, _, rest = logical.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        heredoc = re.search(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?", rest)
        if heredoc and word.upper() in ("RUN", "COPY", "ADD"):
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
    if parts:
        logical = " ".join(p for p in parts if p)
        word, _, rest = logical.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def _substitute(text: str, args: Mapping[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        default = m.group(2)
        found = args.get(name) or default
        return found if found else m.group(0)

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", value, text)


def _unpinned(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"base image {image} has no tag (that means `latest`): pin a version tag"
    if last.split(":", 1)[1] == "latest":
        return f"base image {image} uses the `latest` tag: pin a version tag"
    return None


def _copy_problems(
    instruction: str, rest: str, context: Path, ignore: list[tuple[bool, str]]
) -> list[str]:
    words = rest.split()
    flags = [w for w in words if w.startswith("--")]
    body = rest
    for flag in flags:
        body = body.replace(flag, "", 1)
    body = body.strip()
    if any(f.startswith("--from=") for f in flags):
        return []  # copied from another stage or image
    if body.startswith("["):
        try:
            items = json.loads(body)
        except ValueError:
            return [f"{instruction} has a malformed JSON array"]
    else:
        items = body.split()
    if len(items) < 2:
        return [f"{instruction} needs a source and a destination"]
    problems = []
    for source in items[:-1]:
        if re.match(r"^(https?|ftp)://|^git@", str(source)):
            if instruction == "ADD":
                problems.append(
                    f"ADD of a URL ({source}): download in a RUN step and verify a checksum"
                )
            else:
                problems.append(f"COPY cannot fetch a URL ({source})")
            continue
        rel = str(source).lstrip("/")
        target = (context / rel).resolve()
        if not target.is_relative_to(context):
            problems.append(f"{instruction} source {source} is outside the build context")
            continue
        matches = glob.glob(glob.escape(str(context)) + "/" + rel) if rel else [str(context)]
        if not matches:
            problems.append(
                f"{instruction} source {source} does not exist in the build context ({context})"
            )
        elif all(_ignored(Path(m).relative_to(context).as_posix(), ignore) for m in matches):
            problems.append(f"{instruction} source {source} is excluded by .dockerignore")
    return problems


def _dockerignore(path: Path) -> list[tuple[bool, str]]:
    """``(negated, pattern)`` rules of a ``.dockerignore`` (none if there is no file)."""
    if not path.is_file():
        return []
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, pattern))
    return rules


def _ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Whether ``.dockerignore`` rules exclude a path (the last matching rule wins)."""
    if rel in (".", ""):
        return False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in rules:
        regex = _pattern(pattern)
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def _pattern(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern as a regex: ``*`` and ``?`` stay within one directory,
    ``**`` spans any number of them."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            i += 1
    return re.compile("".join(out))


def _exec_form(rest: str) -> bool:
    try:
        value = json.loads(rest)
    except ValueError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _is_root(user: str) -> bool:
    return user.split(":")[0] in ("root", "0", "")
