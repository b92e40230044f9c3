"""The moving parts of the serving demo (``tessera demo``): ``tessera serve`` in a child
process, and simulated customers that send it predictions and feedback over HTTP.

Only the standard library is imported here (pandas arrives with the rows the customers send).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tessera.errors import TesseraError

if TYPE_CHECKING:
    import pandas as pd

#: The sticky routing key of a request: the customer.
KEY_COLUMN = "customer_id"
#: Requests per second of the simulated customers, sent in batches followed by their feedback.
RATE = 60.0
BATCH = 10
#: Seconds to wait for the server to be ready, and to stop after SIGTERM.
START_SECONDS = 180.0
STOP_SECONDS = 60.0
_LISTENING = re.compile(r"^Serving .* on http://(\S+):(\d+) ")


class DemoError(TesseraError):
    """The serving demo cannot go on: the server did not start or died, the challenger failed."""


class DemoServer:
    """``tessera serve --port 0`` in a child process, its output in a log file.

    Used as a context manager: leaving the block kills a server that was not stopped.
    """

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.banner = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def start(self, timeout: float = START_SECONDS) -> float:
        """Start the server and wait until ``/ready`` answers 200; returns the seconds it took.

        Raises:
            DemoError: the server exited or was not ready within ``timeout`` (with its log).
        """
        started = time.monotonic()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the banner line reaches the log at once
        command = [sys.executable, "-m", "tessera.cli.main", "serve", "--port", "0"]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=self.root, stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        deadline = started + timeout
        while not self.port:
            self._alive_until(deadline, "print the address it listens on")
            for text in self.log.read_text(errors="replace").splitlines():
                found = _LISTENING.match(text)
                if found:
                    self.banner, self.host, self.port = text, found[1], int(found[2])
            time.sleep(0.1)
        while not self._ready():
            self._alive_until(deadline, "be ready")
            time.sleep(0.2)
        return time.monotonic() - started

    def _alive_until(self, deadline: float, what: str) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise DemoError(f"tessera serve exited with status {code}:\n{self.tail()}")
        if time.monotonic() > deadline:
            raise DemoError(f"tessera serve did not {what} in time:\n{self.tail()}")

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("GET", "/ready")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM, then the exit status once the graceful shutdown finished."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise DemoError(
                f"tessera serve did not stop within {timeout:.0f} s of SIGTERM:\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 15) -> str:
        """The end of the server's log, indented."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(f"  {t}" for t in text.splitlines()[-lines:]) or "  (no output)"


@dataclass(frozen=True)
class Answer:
    """One prediction: who answered it, and whether it was right."""

    request_id: str
    version: str
    variant: str
    label: Any
    correct: bool


class Customers:
    """Simulated customers: rows of the test split (neither model trained on them), one request
    each with the customer id as the sticky key; their true label goes back as feedback.

    Args:
        host, port: the server.
        rows: the test split.
        features: the model's input columns.
        target: the label column.
    """

    def __init__(
        self, host: str, port: int, rows: pd.DataFrame, features: list[str], target: str
    ) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=30)
        values = json.loads(rows[features].to_json(orient="values", date_format="iso"))
        keys = rows[KEY_COLUMN].astype(str).tolist() if KEY_COLUMN in rows else None
        self.bodies = [
            json.dumps(
                {"columns": features, "data": [row], **({"key": keys[i]} if keys else {})}
            ).encode()
            for i, row in enumerate(values)
        ]
        self.labels: list[Any] = rows[target].tolist()
        self.next = 0
        self.requests = self.refused = self.errors = self.labelled = 0
        self.first_error: str | None = None
        self.first_refusal: str | None = None
        self._due = time.monotonic()

    def close(self) -> None:
        self.connection.close()

    def _post(self, path: str, body: bytes) -> tuple[int, Any]:
        for attempt in (1, 2):  # once more on a fresh connection if the kept-alive one broke
            try:
                self.connection.request("POST", path, body, {"content-type": "application/json"})
                response = self.connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (http.client.HTTPException, OSError) as exc:
                self.connection.close()
                if attempt == 2:
                    raise DemoError(f"POST {path} failed: {exc}; is the server running?") from exc
        raise AssertionError("unreachable")

    def send(self, count: int = BATCH, rate: float = RATE) -> list[Answer]:
        """Send ``count`` customers, ``rate`` a second, then their labels in one feedback batch."""
        answers: list[Answer] = []
        for _ in range(count):
            self._due = max(self._due + 1 / rate, time.monotonic())
            time.sleep(max(0.0, self._due - time.monotonic()))
            i = self.next % len(self.bodies)
            self.next += 1
            status, data = self._post("/predict", self.bodies[i])
            self.requests += 1
            if status != 200:
                problem = _problem(data)
                if 400 <= status < 500:  # the server refused the row: counted, not fatal
                    self.refused += 1
                    self.first_refusal = self.first_refusal or f"{status}: {problem}"
                else:
                    self.errors += 1
                    self.first_error = self.first_error or f"{status}: {problem}"
                continue
            model = data["model"]
            label = self.labels[i]
            answers.append(
                Answer(
                    data["request_id"],
                    str(model["version"]),
                    str(model["variant"]),
                    label,
                    data["predictions"][0] == label,
                )
            )
        if answers:
            items = [{"request_id": a.request_id, "label": a.label} for a in answers]
            status, data = self._post("/feedback", json.dumps({"feedback": items}).encode())
            if 200 <= status < 300:
                self.labelled += int(data.get("accepted", 0))
            else:
                self.errors += 1
                self.first_error = self.first_error or f"POST /feedback: {status}: {data}"
        return answers


def _problem(data: Any) -> str:
    """The first problem an error response names (``data[0].age: expected ...``)."""
    if isinstance(data, dict):
        problems = data.get("problems") or []
        if problems and isinstance(problems[0], dict):
            return f"{problems[0].get('field')}: {problems[0].get('problem')}"
        return str(data.get("message", data))
    return str(data)
