"""One run at a time per project state directory.

An exclusive ``flock`` on ``.tessera/run.lock``; the file also says who holds it, for the message
the second run prints while it waits. The kernel releases the lock when its holder exits, even
after ``kill -9``, so a crashed run never leaves the project locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def run_lock(
    state_dir: Path, command: str, on_wait: Callable[[dict[str, Any]], None] = lambda h: None
) -> Iterator[None]:
    """Hold the project's run lock; call ``on_wait(holder)`` once if another run has it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "run.lock"
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            on_wait(holder)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
