"""The math verifier's process-wide worker pool (``pebble``), one per process and size.

Started on first use, reused by later batches, replaced when broken, resized or
inherited by a forked child, and stopped at exit. With ``forkserver`` the workers
fork from a small server process that has imported ``preload``, instead of from the
caller, whose heap may hold a run's worth of rows (each worker still imports the
caller's ``__main__`` module, as every forkserver child does, so a script needs the
``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import threading
from collections.abc import Callable, Sequence

from pebble import ProcessPool

_POOL: ProcessPool | None = None
_POOL_KEY: tuple[int, int, str] = (0, 0, "")  # (owning pid, workers, start method)
_POOL_LOCK = threading.Lock()


def get_pool(
    workers: int,
    start_method: str,
    initializer: Callable[[], None],
    preload: Sequence[str] = (),
) -> ProcessPool:
    """The process-wide pool, (re)started if missing, broken, resized or inherited.

    ``preload``: modules the fork server imports once (``forkserver`` only; the
    server starts with the first pool that uses it).
    """
    global _POOL, _POOL_KEY
    key = (os.getpid(), workers, start_method)
    with _POOL_LOCK:
        if _POOL is None or key != _POOL_KEY or not _POOL.active:
            if _POOL is not None and _POOL_KEY[0] == key[0]:
                _stop(_POOL)
            context = multiprocessing.get_context(start_method)
            if start_method == "forkserver":
                context.set_forkserver_preload(list(preload))
            _POOL = ProcessPool(max_workers=workers, initializer=initializer, context=context)
            _POOL_KEY = key
            # A multiprocessing child (e.g. a ProcessPoolExecutor worker) runs no atexit
            # hooks but joins its non-daemon children at exit: without this it would wait
            # forever on the pool's workers. Exit finalizers run there and in a main process.
            multiprocessing.util.Finalize(None, _shutdown_pool, exitpriority=100)
        return _POOL


def _stop(pool: ProcessPool) -> None:
    pool.stop()
    pool.join()


@atexit.register
def _shutdown_pool() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL_KEY[0] == os.getpid():
            _stop(_POOL)
        _POOL = None


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
