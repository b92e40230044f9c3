"""Artifact remotes: move content-addressed files between the local store and any fsspec URL.

A remote mirrors the store's layout under its URL::

    objects/ab/abcdef....parquet   tables, named by their fingerprint
    keys/12/1234....json           stage cache entries
    files/cd/cdef...               raw file blobs, named by the xxh3 of their bytes

Every name is a content hash (or a cache key), so a file that exists under the same name on the
other side is never transferred again. The remote is listed once per prefix (one paginated
``find`` each, not one ``exists`` per file); transfers run on a thread pool.

Safety, in both directions:

* objects and file blobs go first, key entries last, and a key entry is only sent when every
  table it points to is (now) on the receiving side, so an entry never dangles;
* an upload is atomic on the remote: a temporary name and a rename on file systems, a single
  PUT on object stores (S3, GCS, Azure: an object appears whole or not at all);
* a download goes to a temporary file inside the store, is checked against its name
  (``fingerprint_table`` for Parquet objects, xxh3 of the bytes for file blobs, "is a JSON
  object" for key entries) and only then renamed into place. A corrupt remote file is reported
  in the summary and never installed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tessera.data.atomic import atomic_write
from tessera.data.errors import DataError, StoreConfigError
from tessera.data.store import ArtifactStore
from tessera.data.transfer import (
    PREFIXES,
    ByteCounter,
    CorruptFile,
    RemoteError,
    TransferProgress,
    TransferSummary,
    expand_vars,
    list_store,
    referenced_hashes,
    required_objects,
    stem,
    valid_name,
    verify_file,
)

#: fsspec protocols where a single PUT is atomic and a rename is a slow copy + delete.
OBJECT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "r2", "memory"}
)

REMOTES_EXAMPLE = """\
remotes:
  origin:
    url: s3://my-bucket/tessera        # any fsspec URL: file:///shared/cache, gs://..., ...
    options:                           # fsspec storage options; ${VAR} reads the environment
      key: ${AWS_ACCESS_KEY_ID}
      secret: ${AWS_SECRET_ACCESS_KEY}
default_remote: origin"""


class Remote:
    """One artifact remote: an fsspec URL plus storage options.

    ``${VAR}`` in the URL and in option values is replaced by the environment variable VAR when
    the remote is created (a missing variable is a ``UsageError`` naming it); messages show the
    URL as written, so an expanded secret never appears in them. The connection is made on
    first use.
    """

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any] | None = None,
        *,
        name: str = "remote",
    ) -> None:
        self.name = name
        self.written_url = url
        self.url = expand_vars(url, name, "url")
        self.options: dict[str, Any] = expand_vars(dict(options or {}), name, "options")
        self._fs: Any = None
        self._root = ""
        self._lock = threading.Lock()
        self._dirs: set[str] = set()
        self._listed: dict[str, dict[str, int]] = {}

    def __repr__(self) -> str:
        return f"Remote({self.name!r}, {self.written_url!r})"

    # -- connection ------------------------------------------------------------------------
    def _where(self) -> str:
        return f"remote '{self.name}' ({self.written_url})"

    @property
    def fs(self) -> Any:
        """The fsspec file system (connected on first use)."""
        if self._fs is None:
            self._connect()
        return self._fs

    @property
    def root(self) -> str:
        if self._fs is None:
            self._connect()
        return self._root

    @property
    def is_object_store(self) -> bool:
        proto = self.fs.protocol
        protos = set(proto) if isinstance(proto, tuple | list) else {proto}
        return bool(protos & OBJECT_STORES)

    def _connect(self) -> None:
        try:
            url_to_fs = importlib.import_module("fsspec.core").url_to_fs
        except ImportError:  # pragma: no cover - fsspec is a dependency
            raise DataError("artifact remotes need fsspec: pip install fsspec") from None
        scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"
        try:
            fs, root = url_to_fs(self.url, **self.options)
        except ImportError as exc:
            extra = " (pip install 'tessera[s3]')" if scheme in ("s3", "s3a") else ""
            raise StoreConfigError(
                f"{self._where()}: the '{scheme}' protocol needs a package that is not "
                f"installed: {exc}{extra}"
            ) from None
        except ValueError as exc:
            if "Protocol not known" in str(exc):
                raise StoreConfigError(
                    f"{self._where()}: unknown protocol '{scheme}'; use an fsspec URL such as "
                    "file:///shared/cache, s3://bucket/prefix or gs://bucket/prefix"
                ) from None
            raise StoreConfigError(f"{self._where()}: bad URL or options: {exc}") from None
        except TypeError as exc:
            raise StoreConfigError(
                f"{self._where()}: bad storage options {sorted(self.options)}: {exc}; "
                f"check remotes.{self.name}.options in tessera.yaml"
            ) from None
        except Exception as exc:
            raise DataError(f"{self._where()}: cannot open: {_describe(exc)}") from None
        self._fs = fs
        self._root = str(root).rstrip("/")

    def _unreachable(self, exc: BaseException, doing: str) -> DataError:
        text = _describe(exc)
        hint = "check the URL, the network and the credentials"
        name = type(exc).__name__
        if "Credentials" in name or "credentials" in str(exc).lower():
            hint = (
                "no credentials found: set key/secret (or profile) under "
                f"remotes.{self.name}.options in tessera.yaml, or the AWS_* environment variables"
            )
        elif isinstance(exc, PermissionError):
            hint = "access denied: check the credentials and the bucket's permissions"
        elif isinstance(exc, FileNotFoundError):
            hint = "it does not exist: check the URL (is the bucket created?)"
        return DataError(f"cannot {doing} {self._where()}: {text}; {hint}")

    # -- listing ---------------------------------------------------------------------------
    def listing(self, prefixes: Iterable[str] = PREFIXES, *, reuse: bool = False) -> dict[str, int]:
        """``{relative path: size}`` of the remote's content-addressed files: one (paginated)
        listing per prefix, or the previous one with ``reuse``."""
        fs, root = self.fs, self.root
        found: dict[str, int] = {}
        for prefix in prefixes:
            if reuse and prefix in self._listed:
                found.update(self._listed[prefix])
                continue
            base = f"{root}/{prefix}" if root else prefix
            mine: dict[str, int] = {}
            try:
                fs.invalidate_cache(base)  # s3fs & co. cache listings per instance
                listing = fs.find(base, detail=True)
            except FileNotFoundError:
                listing = {}
            except Exception as exc:
                raise self._unreachable(exc, "list") from None
            for path, info in listing.items():
                if info.get("type", "file") != "file":
                    continue
                rel = str(path).rstrip("/")
                rel = rel[len(root) + 1 :] if root else rel
                if valid_name(rel):
                    mine[rel] = int(info.get("size") or 0)
            self._listed[prefix] = mine
            found.update(mine)
        return found

    def exists(self) -> bool:
        try:
            return bool(self.fs.exists(self.root)) if self.root else True
        except Exception as exc:
            raise self._unreachable(exc, "reach") from None

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    # -- single transfers ------------------------------------------------------------------
    def _ensure_dir(self, path: str) -> None:
        with self._lock:
            if path in self._dirs:
                return
        self.fs.makedirs(path, exist_ok=True)
        with self._lock:
            self._dirs.add(path)

    def upload(self, lpath: Path, rel: str, progress: TransferProgress | None = None) -> None:
        """Copy one local file to ``rel`` on the remote, atomically."""
        fs, target = self.fs, self._path(rel)
        counter = ByteCounter(progress)
        if self.is_object_store:  # one PUT (or one multipart upload): atomic
            fs.put_file(str(lpath), target, callback=counter.callback())
        else:
            parent, name = target.rsplit("/", 1)
            self._ensure_dir(parent)
            tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                fs.put_file(str(lpath), tmp, callback=counter.callback())
                fs.mv(tmp, target)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm_file(tmp)
                raise
        counter.finish(lpath.stat().st_size)

    def download(
        self, rel: str, dest: Path, progress: TransferProgress | None = None, size: int = 0
    ) -> None:
        """Fetch ``rel`` into ``dest`` through a verified temporary file.

        Raises ``CorruptFile`` (nothing installed) when the content does not match the name.
        """
        source = self._path(rel)
        counter = ByteCounter(progress)

        def write(tmp: str) -> None:
            self.fs.get_file(source, tmp, callback=counter.callback())
            counter.finish(size)
            verify_file(rel, Path(tmp))

        atomic_write(dest, write)

    def read_entry(self, rel: str) -> bytes:
        return bytes(self.fs.cat_file(self._path(rel)))

    # -- push / pull -----------------------------------------------------------------------
    def push(
        self,
        store: ArtifactStore,
        *,
        keys: Collection[str] | None = None,
        jobs: int = 8,
        progress: TransferProgress | None = None,
    ) -> TransferSummary:
        """Upload what the remote lacks: everything, or only ``keys`` and what they reference."""
        t0 = time.perf_counter()
        summary = TransferSummary("push", self.name, self.written_url)
        local = list_store(store.root)
        if not self.is_object_store:
            try:
                self.fs.makedirs(self.root, exist_ok=True)
            except Exception as exc:
                raise self._unreachable(exc, "create") from None
        remote = self.listing()
        if not remote and self.is_object_store:
            bucket = self.root.split("/", 1)[0]
            try:
                found = bool(self.fs.exists(bucket))
            except Exception as exc:
                raise self._unreachable(exc, "reach") from None
            if not found:
                raise DataError(
                    f"{self._where()}: the bucket '{bucket}' does not exist; create it first"
                )
        entries: dict[str, dict[str, Any]] = {}  # key entry path -> parsed entry
        if keys is None:
            wanted = set(local)
            for rel in (r for r in local if r.startswith("keys/") and r not in remote):
                entry = _read_json(store.root / rel)
                if entry is None:
                    summary.corrupt.append(f"{store.root / rel} (local, not JSON: not pushed)")
                    wanted.discard(rel)
                else:
                    entries[rel] = entry
        else:
            wanted = set()
            index = _index(local)
            for key in dict.fromkeys(keys):
                rel = _key_rel(key)
                entry = _read_json(store.root / rel) if rel in local else None
                if entry is None:
                    summary.missing_keys.append(key)
                    continue
                entries[rel] = entry
                wanted.add(rel)
                wanted.update(index[h] for h in referenced_hashes(entry) if h in index)
        todo = sorted(rel for rel in wanted if rel not in remote)
        summary.skipped = len(wanted) - len(todo)
        if progress is not None:
            progress.start(len(todo), sum(local[r] for r in todo))

        def send(rel: str) -> None:
            self.upload(store.root / rel, rel, progress)

        blobs = [r for r in todo if not r.startswith("keys/")]
        done = self._parallel(blobs, local, send, summary, jobs)
        there = _objects(remote) | _objects(done)
        ready = []
        for rel in (r for r in todo if r.startswith("keys/")):
            if required_objects(entries[rel]) <= there:
                ready.append(rel)
            else:
                summary.incomplete_keys.append(stem(rel))
                if progress is not None:
                    progress.advance(local[rel])
        self._parallel(ready, local, send, summary, jobs)
        summary.seconds = time.perf_counter() - t0
        _raise_failures(summary, self._where(), "pushing to")
        return summary

    def pull(
        self,
        store: ArtifactStore,
        *,
        keys: Collection[str] | None = None,
        kinds: Collection[str] = PREFIXES,
        jobs: int = 8,
        progress: TransferProgress | None = None,
        reuse_listing: bool = False,
    ) -> TransferSummary:
        """Download what the store lacks: everything on the remote (of ``kinds``: objects,
        files, keys), or only ``keys`` and what they reference. Every file is verified before
        it is installed; a key entry is installed only once the tables it needs are here.

        ``reuse_listing`` skips listing the remote again after an earlier call on this
        ``Remote`` (for a command that pulls in rounds)."""
        t0 = time.perf_counter()
        summary = TransferSummary("pull", self.name, self.written_url)
        prefixes = [p for p in PREFIXES if p in kinds or keys is not None]
        remote = self.listing(prefixes, reuse=reuse_listing)
        if not remote and not self.exists():
            raise DataError(f"{self._where()} does not exist; check the URL, or push to it first")
        local = list_store(store.root)
        raw: dict[str, bytes] = {}  # key entry path -> its bytes, fetched before installing
        if keys is None:
            wanted = {rel for rel in remote if rel.split("/", 1)[0] in kinds}
        else:
            wanted = set()
            index = _index(remote)
            needed = {_key_rel(k): k for k in keys}
            summary.missing_keys += [
                k for rel, k in needed.items() if rel not in remote and rel not in local
            ]
            present = [rel for rel in needed if rel in remote and rel not in local]
            summary.skipped += sum(1 for rel in needed if rel in local)
            raw = self._fetch_entries(present, summary, jobs)
            for rel in [*raw, *(r for r in needed if r in local)]:
                entry = _parse_entry(raw[rel]) if rel in raw else _read_json(store.root / rel)
                if entry is not None:
                    wanted.update(index[h] for h in referenced_hashes(entry) if h in index)
            wanted.update(raw)
        todo = sorted(rel for rel in wanted if rel not in local)
        summary.skipped += len(wanted) - len(todo)
        if progress is not None:
            progress.start(len(todo), sum(remote[r] for r in todo))

        def fetch(rel: str) -> None:
            self.download(rel, store.root / rel, progress, remote[rel])

        blobs = [r for r in todo if not r.startswith("keys/")]
        done = self._parallel(blobs, remote, fetch, summary, jobs)
        there = _objects(local) | _objects(done)
        entry_paths = [r for r in todo if r.startswith("keys/")]
        raw.update(self._fetch_entries([r for r in entry_paths if r not in raw], summary, jobs))
        ready: dict[str, bytes] = {}
        for rel in entry_paths:
            if rel not in raw:  # failed or corrupt: already reported
                continue
            entry = _parse_entry(raw[rel])
            assert entry is not None  # checked by _fetch_entries
            if required_objects(entry) <= there:
                ready[rel] = raw[rel]
            else:
                summary.incomplete_keys.append(stem(rel))
            if progress is not None:
                progress.advance(remote[rel])

        def install(rel: str) -> None:
            data = ready[rel]

            def write(tmp: str) -> None:
                Path(tmp).write_bytes(data)

            atomic_write(store.root / rel, write)

        self._parallel(list(ready), remote, install, summary, jobs)
        summary.seconds = time.perf_counter() - t0
        _raise_failures(summary, self._where(), "pulling from")
        return summary

    def _fetch_entries(
        self, rels: list[str], summary: TransferSummary, jobs: int
    ) -> dict[str, bytes]:
        """Key entries into memory (they are small); failures and non-JSON are reported."""
        fetched: dict[str, bytes] = {}
        for rel, data in zip(rels, _map(jobs, self.read_entry, rels), strict=True):
            if isinstance(data, BaseException):
                summary.failed.append(f"{rel}: {_describe(data)}")
            elif _parse_entry(data) is None:
                summary.corrupt.append(f"{rel} (not a JSON object)")
            else:
                fetched[rel] = data
        return fetched

    def _parallel(
        self,
        todo: list[str],
        sizes: Mapping[str, int],
        transfer: Callable[[str], None],
        summary: TransferSummary,
        jobs: int,
    ) -> list[str]:
        """Run ``transfer`` over ``todo`` on a thread pool; returns the paths that made it."""
        done: list[str] = []
        if not todo:
            return done
        lock = threading.Lock()

        def one(rel: str) -> None:
            try:
                transfer(rel)
            except CorruptFile as exc:
                with lock:
                    summary.corrupt.append(f"{rel} ({exc.got})")
                return
            except Exception as exc:
                with lock:
                    summary.failed.append(f"{rel}: {_describe(exc)}")
                return
            with lock:
                kind = rel.split("/", 1)[0]
                summary.transferred[kind] = summary.transferred.get(kind, 0) + 1
                summary.bytes += sizes.get(rel, 0)
                done.append(rel)

        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="tessera-remote")
        try:
            for future in [pool.submit(one, rel) for rel in todo]:
                future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return done


def _map(jobs: int, fn: Callable[[Any], bytes], items: list[Any]) -> list[bytes | BaseException]:
    """``fn`` over ``items`` on a thread pool; an exception is returned in place of its value."""

    def safe(item: Any) -> bytes | BaseException:
        try:
            return fn(item)
        except Exception as exc:
            return exc

    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(safe, items))


def _key_rel(key: str) -> str:
    return f"keys/{key[:2]}/{key}.json"


def _objects(paths: Iterable[str]) -> set[str]:
    """Fingerprints of the tables among ``paths``."""
    return {stem(rel) for rel in paths if rel.startswith("objects/")}


def _index(listing: Iterable[str]) -> dict[str, str]:
    """Content hash -> relative path, for objects and file blobs."""
    return {stem(rel): rel for rel in listing if not rel.startswith("keys/")}


def _parse_entry(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return _parse_entry(path.read_bytes())
    except OSError:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _raise_failures(summary: TransferSummary, where: str, doing: str) -> None:
    if not summary.failed:
        return
    n = len(summary.failed)
    raise RemoteError(
        f"{n} transfer{'s' if n != 1 else ''} failed while {doing} {where} (first: "
        f"{summary.failed[0]}); the {summary.files} files that arrived are complete: run the "
        "same command again to retry the rest",
        summary,
    )
