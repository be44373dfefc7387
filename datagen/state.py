"""State that checks itself: the manifest, shards and stage datasets, validated on resume.

Each finished stage records the fingerprint of the dataset it wrote (a hash
of its Arrow files), and the next stage's hash covers it, as ``datasets``
chains fingerprints: a stage that reruns and writes different rows
invalidates every stage after it. Damaged pieces are never fatal: a manifest
that is not one is moved aside (every stage then reruns, answering from the
request cache), a shard that does not read is recomputed, and a finished
stage whose dataset is gone or changed reruns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from datagen.views import VIEW_SPEC, StaleViewError, is_view, open_part, view_spec

logger = logging.getLogger(__name__)

ENTRY_FIELDS = {"name": str, "hash": str, "rows_in": int, "rows_out": int, "rows_set_aside": int}
"""What a manifest entry must hold to be trusted (other fields are optional)."""


def data_fingerprint(folder: Path) -> str:
    """A hash of a saved dataset's Arrow files, in name order (a view's: its rows file and
    ``view.json``, which names the upstream's fingerprint, so views chain).

    Raises:
        OSError: A file cannot be read (the caller recomputes the stage).
    """
    digest = hashlib.sha256()
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise FileNotFoundError(f"no Arrow file in {folder}")
    if (folder / VIEW_SPEC).exists():
        files.append(folder / VIEW_SPEC)
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest, or an empty one when it is missing or damaged (moved aside, warned)."""
    if not path.exists():
        return {"stages": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"not valid JSON: {exc}"
    else:
        problem = _manifest_problem(manifest)
    if problem is None:
        manifest["stages"] = {
            name: entry for name, entry in manifest["stages"].items() if _entry_ok(name, entry)
        }
        return manifest
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    logger.warning(
        "%s is damaged (%s); moved to %s. Every stage reruns; generations come from the "
        "request cache, so nothing already generated is paid again",
        path,
        problem,
        aside,
    )
    return {"stages": {}}


def _manifest_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if not isinstance(manifest.get("stages"), dict):
        return "no 'stages' object"
    return None


def _entry_ok(name: str, entry: Any) -> bool:
    ok = isinstance(entry, dict) and all(
        isinstance(entry.get(k), t) for k, t in ENTRY_FIELDS.items()
    )
    if not ok:
        logger.warning("manifest entry for stage %s is damaged: the stage reruns", name)
    return ok


def shard_ok(path: Path) -> bool:
    """Whether a finished-batch shard reads back; a damaged one is deleted (and recomputed)."""
    try:
        pq.read_metadata(path)
        return True
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        logger.warning("%s is damaged (%s): recomputing that batch", path, exc)
        path.unlink(missing_ok=True)
        return False


def load_finished(
    stage_dir: Path, side_name: str, fingerprint: str | None, upstream_fingerprint: str = ""
) -> Any | None:
    """A finished stage's dataset, or None (with a warning) when it must be recomputed.

    ``upstream_fingerprint``: the previous stage's, which a view's must equal (a view
    over another version of its upstream is never reused).
    """
    data = stage_dir / "data"
    try:
        current = data_fingerprint(data)
        if fingerprint is not None and current != fingerprint:
            raise ValueError(f"its files changed since the stage wrote them ({data})")
        for part in (data, stage_dir / side_name):
            if is_view(part) and view_spec(part)["upstream_fingerprint"] != upstream_fingerprint:
                raise StaleViewError(f"{part} was built over another version of its upstream")
        open_part(stage_dir / side_name)  # the side output must read too
        return open_part(data)
    except Exception as exc:  # missing, truncated or replaced files: recompute, never crash
        logger.warning(
            "stage %s finished earlier but its dataset cannot be used (%s: %s): recomputing it",
            stage_dir.name,
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
        )
        return None
