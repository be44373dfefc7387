"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``.

The kernel drops the lock when its holder exits, however it exits, so a lock
left by a killed run is simply free again and is taken over; the pid written
in the file is only there to name the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from datagen.config import ConfigError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirLocked(ConfigError):
    """Another live process holds the run directory."""


class RunLock:
    """Hold ``RUN_DIR/.lock`` for the life of the ``with`` block.

    >>> import tempfile
    >>> with RunLock(tempfile.mkdtemp()) as lock:
    ...     lock.path.read_text() == str(os.getpid())
    True
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise RunDirLocked(
                f"{self.path.parent} is in use by another datagen run (pid {holder}); wait for "
                "it to finish, stop it, or choose another folder with hydra.run.dir=..."
            ) from None
        previous = _read_pid(fd)
        if previous not in ("", str(os.getpid())):
            logger.info(
                "took over the run directory lock left by pid %s (no longer running)", previous
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "?"
