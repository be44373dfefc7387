"""Messages for the ways a run can end that are nobody's bug: a full disk, Ctrl-C.

Everything a run writes goes to a temporary name first and is renamed into
place, so what is left behind after either one resumes correctly; the
messages say so, instead of a traceback.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

EXIT_DISK_FULL = 4
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as shells report a Ctrl-C."""


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full disk or quota (pyarrow's and sqlite's included)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk is full" in text or "database or disk is full" in text


def disk_full_message(exc: BaseException, run_dir: Path, needed: int | None = None) -> str:
    """One line: where, how much is free (and needed, if known), and that a rerun resumes."""
    path = Path(getattr(exc, "filename", None) or run_dir)
    probe = path if path.exists() else path.parent if path.parent.exists() else run_dir
    try:
        free = f"{shutil.disk_usage(probe).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    need = f", about {needed / 2**20:.0f} MiB more needed" if needed else ""
    return (
        f"disk full while writing {path} ({free}{need}): free some space and rerun the same "
        "command; finished stages and batches are kept and the run resumes"
    )
