"""The models a multi-model endpoint has loaded, one table shared by every worker process.

A load or unload reaches whichever worker accepted the connection, yet every worker must then answer
for that model. The supervisor creates the table before forking: a small JSON file, and a generation
counter in shared memory. A writer takes an exclusive ``flock``, replaces the file by an atomic rename,
then bumps the counter; a worker compares the counter with the generation it last read (no system call
on the request path) and reads the file again only when it moved.

Imports nothing heavy: the supervisor uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelcrate.serving.privileges import ServingUser


class ModelTable:
    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="modelcrate-models-"))
        self.path = self.directory / "models.json"
        self._lock_path = self.directory / "models.lock"
        self._memory = mmap.mmap(-1, 8)  # anonymous and shared: forked workers see every bump
        self._generation = memoryview(self._memory).cast("q")
        self._write({})

    def give_to(self, user: ServingUser) -> None:
        """Workers that dropped root to ``user`` replace the file and lock it: they own the directory."""
        os.chown(self.directory, user.uid, user.gid)

    @property
    def generation(self) -> int:
        return self._generation[0]

    def read(self) -> tuple[int, dict[str, dict]]:
        """(generation, entries by model name). The generation is read first: should a writer slip in
        between, the newer file is read under the older generation, and read again next time."""
        generation = self._generation[0]
        return generation, json.loads(self.path.read_text())

    @contextlib.contextmanager
    def change(self) -> Iterator[dict[str, dict]]:
        """Exclusive access to the entries: the caller changes the dict; it is written back unless the
        block raises."""
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            entries = json.loads(self.path.read_text())
            yield entries
            self._write(entries)
            self._generation[0] += 1

    def _write(self, entries: dict) -> None:
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps(entries))
        os.replace(staging, self.path)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
