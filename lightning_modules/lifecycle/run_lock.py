"""One process at a time in a run directory: a second `fit` (or validate / test) of the same run is refused
instead of interleaving its CSVs, event files and checkpoints with the first. The lock is an OS file lock
(fcntl through `filelock`), so the kernel releases it when the holder dies, kill -9 included."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from pretrained.files import atomic_write_text, remove_stale_temporaries

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.lock.owner"


class RunDirectoryBusy(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self._lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)
        self._created_dir = False

    def acquire(self) -> None:
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            owner = self.run_dir / OWNER_NAME
            holder = owner.read_text().strip() if owner.is_file() else "another process"
            raise RunDirectoryBusy(
                f"run directory {self.run_dir} is in use by {holder}: two processes in one run would interleave "
                "its checkpoints, CSVs and event files. Wait for that process to end (or stop it), then run again"
            ) from None
        atomic_write_text(self.run_dir / OWNER_NAME, f"process {os.getpid()} on {socket.gethostname()}\n")
        for directory in (self.run_dir, self.run_dir / "checkpoints"):
            remove_stale_temporaries(directory)  # left by a killed predecessor's atomic writes

    def release(self) -> None:
        """Release; a directory this lock created and nothing else wrote to is removed again. The lock file
        itself stays (deleting it would let a process that opened it just before hold a lock on a file no
        longer in the directory)."""
        if not self._lock.is_locked:
            return
        (self.run_dir / OWNER_NAME).unlink(missing_ok=True)
        self._lock.release()
        if self._created_dir and {p.name for p in self.run_dir.iterdir()} <= {LOCK_NAME}:
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)
            self.run_dir.rmdir()
