"""Machinery of bench/serving/run.py: servers in process groups, wrk runs, CPU accounting,
virtualenvs for the peer and py-spy, and py-spy's collapsed stacks summarised.

Nothing here knows which servers are compared; ``run.py`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "post.lua"
#: The environment as started: loading a model in the benchmark's process sets MLflow variables
#: (MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI) that must not leak into the servers.
BASE_ENV = dict(os.environ)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A server, a tool or a measurement failed; the message says which and shows its output."""


def say(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` to completion; its stdout, or :class:`BenchError` with both streams."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=BASE_ENV if env is None else env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(
            f"`{' '.join(map(str, cmd))}` in {cwd} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


# -- tools ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of ``wrk``, installed with apt-get (Debian package ``wrk``) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing wrk (apt-get install wrk) ...")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(
        "wrk is not installed: install it (Debian/Ubuntu: `sudo apt-get install wrk`; "
        "macOS: `brew install wrk`) and run again"
    )


def venv_versions(venv: Path, names: list[str]) -> dict[str, str | None]:
    """The installed versions of ``names`` in ``venv`` (None: not installed)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    out = run([venv / "bin" / "python", "-c", code, *names], cwd=venv.parent)
    versions: dict[str, str | None] = json.loads(out)
    return versions


def ensure_venv(venv: Path, pins: list[str], python: str) -> None:
    """Create ``venv`` (``python -m venv``) and pip-install ``pins`` unless they are there."""
    wanted = dict(p.split("==", 1) for p in pins)
    if (venv / "bin" / "python").exists():
        if venv_versions(venv, list(wanted)) == wanted:
            return
    else:
        say(f"creating {venv} ...")
        run([python, "-m", "venv", venv], cwd=venv.parent)
    say(f"installing {' '.join(pins)} into {venv} (takes a minute) ...")
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", *pins], cwd=venv.parent)
    got = venv_versions(venv, list(wanted))
    if got != wanted:
        raise BenchError(f"{venv}: expected {wanted}, got {got}")


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """One request on a fresh connection: ``(status, body)``; ``(0, b"")`` when refused."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


class Server:
    """A server in its own process group on a free loopback port, its output in a log file.

    ``cmd`` may hold ``{port}``, replaced by the port chosen at start.
    """

    def __init__(
        self, name: str, cmd: list[str | Path], cwd: Path, env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.port = free_port()
        self.cmd = [str(c).replace("{port}", str(self.port)) for c in cmd]
        self.cwd = cwd
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Server:
        say(f"starting {self.name} on port {self.port} ...")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, path: str, timeout: float = 180, streak: int = 20) -> Server:
        """Until ``streak`` GETs of ``path`` in a row (fresh connections) answered 200.

        Raises:
            BenchError: the server exited or was not ready in time (with its log's end).
        """
        deadline = time.monotonic() + timeout
        ok = 0
        while ok < streak:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BenchError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"the end of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} not ready after {timeout:.0f} s; the end of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            status, _ = http("GET", self.url(path), timeout=2)
            ok = ok + 1 if status == 200 else 0
            time.sleep(0.02 if status == 200 else 0.25)
        return self

    def cpu_ticks(self) -> int:
        """CPU time (user + system, clock ticks) of the live processes of the group."""
        total = 0
        for pid, fields in _group(self.pid):
            del pid
            total += int(fields[11]) + int(fields[12])
        return total

    def stop(self) -> None:
        """SIGTERM to the whole process group (graceful shutdown), SIGKILL after 30 s."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + wait
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)  # the workers may outlive the leader briefly
            if not _group_alive(pgid):
                break
        self.proc = None


def _group(pgid: int) -> list[tuple[int, list[str]]]:
    """``(pid, stat fields after the command name)`` of the processes in group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            found.append((int(stat.parent.name), fields))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Load:
    """One wrk run, from the JSON line ``post.lua`` prints (latencies in milliseconds).

    ``others_cpu`` is the share of all CPUs used by processes other than the server and wrk
    while wrk ran: the noise on this measurement.
    """

    connections: int
    seconds: float
    requests: int
    rps: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    others_cpu: float
    server_cpu: float
    wrk_cpu: float
    server_cpu_seconds: float
    text: str

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def cpu_ms_per_request(self) -> float:
        """CPU time the server's processes spent per request (less sensitive to noise)."""
        return 1000 * self.server_cpu_seconds / max(self.requests, 1)


def _cpu_totals() -> tuple[int, int]:
    """``(all ticks, idle ticks)`` of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(server: Server, path: str, body: Path, connections: int, threads: int, secs: float) -> Load:
    """Load ``path`` of ``server`` with wrk: ``connections`` connections POSTing ``body``.

    Raises:
        BenchError: wrk failed or printed no result line.
    """
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{secs:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        server.url(path),
    ]
    total0, idle0 = _cpu_totals()
    server0, children0 = server.cpu_ticks(), _children_cpu()
    proc = subprocess.run(
        cmd,
        env={**BASE_ENV, "BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        timeout=secs + 120,
        check=False,
    )
    total1, idle1 = _cpu_totals()
    server1, children1 = server.cpu_ticks(), _children_cpu()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    data = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    errors: dict[str, int] = dict(data["errors"])
    # wrk's own summary says the same; read it too, so that neither can hide an error
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", proc.stdout
    )
    if non2xx:
        errors["status"] = max(errors["status"], int(non2xx.group(1)))
    if sock:
        for key, value in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            errors[key] = max(errors[key], int(value))
    ticks = max(total1 - total0, 1)
    busy = (ticks - (idle1 - idle0)) / ticks
    server_cpu = max(server1 - server0, 0) / ticks
    wrk_cpu = (children1 - children0) * CLOCK_TICKS / ticks
    duration = data["duration_us"] / 1e6
    return Load(
        connections=connections,
        seconds=duration,
        requests=data["requests"],
        rps=data["requests"] / duration,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        others_cpu=max(busy - server_cpu - wrk_cpu, 0.0),
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        server_cpu_seconds=max(server1 - server0, 0) / CLOCK_TICKS,
        text=proc.stdout,
    )


def combine(loads: list[Load]) -> Load:
    """Several runs of one endpoint as one: the median of each rate and percentile, summed
    requests, errors and CPU time, the mean CPU shares, the largest maximum."""
    import statistics

    def med(attr: str) -> float:
        return float(statistics.median(getattr(load, attr) for load in loads))

    errors: dict[str, int] = {}
    for load in loads:
        for key, value in load.errors.items():
            errors[key] = errors.get(key, 0) + value
    return Load(
        connections=loads[0].connections,
        seconds=sum(load.seconds for load in loads),
        requests=sum(load.requests for load in loads),
        rps=med("rps"),
        errors=errors,
        p50_ms=med("p50_ms"),
        p90_ms=med("p90_ms"),
        p99_ms=med("p99_ms"),
        max_ms=max(load.max_ms for load in loads),
        others_cpu=statistics.fmean(load.others_cpu for load in loads),
        server_cpu=statistics.fmean(load.server_cpu for load in loads),
        wrk_cpu=statistics.fmean(load.wrk_cpu for load in loads),
        server_cpu_seconds=sum(load.server_cpu_seconds for load in loads),
        text="\n".join(load.text for load in loads),
    )


def brief(load: Load) -> str:
    errors = f", {load.failed} ERRORS {load.errors}" if load.failed else ""
    return (
        f"{load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms "
        f"({load.requests:,} requests{errors}; server CPU {load.cpu_ms_per_request:.2f} ms per "
        f"request; CPUs: server {load.server_cpu:.0%}, "
        f"wrk {load.wrk_cpu:.0%}, others {load.others_cpu:.0%})"
    )


# -- py-spy --------------------------------------------------------------------------------------


def pyspy_record(pyspy: Path, server: Server, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling every process of ``server`` (GIL holders only, 100 Hz) into ``out``."""
    return subprocess.Popen(
        [
            str(pyspy),
            "record",
            "--pid",
            str(server.pid),
            "--subprocesses",
            "--duration",
            f"{seconds:g}",
            "--rate",
            "100",
            "--gil",
            "--nonblocking",
            "--nolineno",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Where the GIL-holding samples of py-spy's collapsed stacks went.

    Three views: each sample charged to the innermost Tessera function on its stack and the
    library its innermost frame is in; the inclusive share of Tessera's functions; the self share
    of every function.
    """
    charged: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        total += n
        ours = [f for f in frames if "(tessera/" in f]
        leaf_lib = _library(frames[-1])
        key = f"{ours[-1]} -> {leaf_lib}" if ours else f"(outside Tessera) -> {leaf_lib}"
        charged[key] = charged.get(key, 0) + n
        for frame in set(ours):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def table(counts: dict[str, int]) -> str:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return "\n".join(f"{100 * n / max(total, 1):6.1f}%  {name}" for name, n in best)

    return (
        f"{total:,} samples holding the GIL, all processes of the server (raw stacks: {raw})\n\n"
        "charged to the innermost Tessera function -> the library the time is spent in:\n"
        f"{table(charged)}\n\n"
        f"Tessera functions, inclusive (the function and what it calls):\n{table(inclusive)}\n\n"
        f"self (the function's own code):\n{table(own)}\n"
    )


def _short(frame: str) -> str:
    """``predict (/x/site-packages/sklearn/pipeline.py)`` -> ``predict (sklearn/pipeline.py)``."""
    name, _, path = frame.partition(" (")
    path = path.rstrip(")")
    for marker in ("site-packages/", "/src/", f"/lib/python{sys.version_info[0]}."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib/"):
                path = path.split("/", 1)[-1]
            break
    return f"{name} ({path})" if path else name


def _library(frame: str) -> str:
    """The top-level package of a shortened frame: ``sklearn``, ``pandas``, ``asyncio`` ..."""
    path = frame.rpartition(" (")[2].rstrip(")")
    return path.split("/", 1)[0].removesuffix(".py") or "?"
