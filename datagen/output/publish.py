"""Write output folders, and upload the Hub folder.

Two layouts:

- ``<dir>/<name>/``: ``<name>.parquet`` and a ``README.md`` card, one folder per
  output (always written); ``arrow/`` (``save_to_disk``) too with
  ``output.save_arrow``. The Parquet file is the output's one full copy (a run
  directory holds each text once more in the generate stage, and the stages
  after it are views); :func:`load_output` opens it as a ``datasets.Dataset``.
- ``<dir>/hub/``: exactly what ``output.push_to_hub`` uploads, one dataset repo
  with one config per output: ``README.md`` plus
  ``<name>/train-0000K-of-0000N.parquet`` shards. ``output.dry_run=true``
  writes it and uploads nothing; ``datasets.load_dataset(folder, name)`` reads it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import HfApi, get_token

from datagen.config import ConfigError
from datagen.output.builders import BuiltOutput

logger = logging.getLogger(__name__)

HUB_FOLDER = "hub"
"""Name of the upload folder inside ``output.dir``."""

MAX_SHARD_BYTES = 500 * 1024 * 1024
"""Parquet shard size: the Hub serves and previews files of a few hundred MB well."""


def write_output(out: BuiltOutput, folder: Path, card: str, *, save_arrow: bool = False) -> None:
    """Write one output's folder: ``<name>.parquet`` + ``README.md`` (+ ``arrow/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if save_arrow:
        # One shard even when empty: datasets 5.2 writes zero shards for zero rows, and
        # load_from_disk then fails (IndexError in concat_tables).
        num_shards = 1 if not len(out.dataset) else None
        out.dataset.save_to_disk(str(folder / "arrow"), num_shards=num_shards)
    out.dataset.to_parquet(str(output_file(folder)))
    (folder / "README.md").write_text(card, encoding="utf-8")


def output_file(folder: Path) -> Path:
    """The Parquet file of the output in ``folder`` (named like the output)."""
    return Path(folder) / f"{Path(folder).name}.parquet"


def load_output(
    folder: Path | str, columns: Sequence[str] | None = None, limit: int | None = None
) -> datasets.Dataset:
    """The output written in ``folder``, from its Parquet file.

    Reading decompresses into memory, so a caller that needs a few columns or rows
    names them: ``columns`` (those the file has) and ``limit`` (the first rows only).
    The features come from the file's schema (``to_parquet`` stores them), and
    nothing is copied into the ``datasets`` cache, unlike ``load_dataset``.

    Raises:
        FileNotFoundError: ``folder`` holds no output (the message names the file).
    """
    path = output_file(Path(folder))
    if not path.exists():
        raise FileNotFoundError(f"no output at {path} (emit writes <name>/<name>.parquet)")
    parquet = pq.ParquetFile(pa.memory_map(str(path)))  # a path would be read into buffers
    names = None if columns is None else [c for c in parquet.schema_arrow.names if c in columns]
    if limit is not None:
        first = next(parquet.iter_batches(batch_size=max(limit, 1), columns=names), None)
        empty = parquet.schema_arrow.empty_table()  # the schema, with the features
        empty = empty if names is None else empty.select(names)
        table = empty if first is None else pa.Table.from_batches([first], schema=empty.schema)
        return datasets.Dataset(table.slice(0, limit))
    return datasets.Dataset(parquet.read(columns=names))


def output_rows(folder: Path | str) -> int:
    """The number of rows of the output in ``folder``, from its Parquet footer."""
    return pq.ParquetFile(pa.memory_map(str(output_file(Path(folder))))).metadata.num_rows


def write_shards(
    ds: datasets.Dataset, folder: Path, max_shard_bytes: int = MAX_SHARD_BYTES
) -> list[Path]:
    """Write ``ds`` as ``train-0000K-of-0000N.parquet`` files of at most about ``max_shard_bytes``.

    Args:
        ds: The dataset.
        folder: Where the shards go (created).
        max_shard_bytes: Target upper size of one shard (in-memory Arrow bytes).

    Returns:
        The shard paths, in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = max(1, math.ceil(ds.data.nbytes / max_shard_bytes)) if len(ds) else 1
    paths = []
    for k in range(n):
        path = folder / f"train-{k:05d}-of-{n:05d}.parquet"
        ds.shard(num_shards=n, index=k, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def hub_data_files(outputs: Sequence[BuiltOutput]) -> dict[str, str]:
    """Output name -> data files pattern inside the Hub folder."""
    return {o.name: f"{o.name}/train-*.parquet" for o in outputs}


def write_hub_folder(outputs: Sequence[BuiltOutput], folder: Path, card: str) -> Path:
    """Write the folder ``push_to_hub`` uploads (and ``dry_run`` leaves for inspection).

    Args:
        outputs: The datasets; each becomes a config of the same name.
        folder: The folder to (re)create.
        card: Its ``README.md``, rendered with :func:`hub_data_files`.

    Returns:
        ``folder``.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for out in outputs:
        write_shards(out.dataset, folder / out.name)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def hub_token(token_env: str) -> str:
    """The Hub token: ``$token_env``, else the one ``hf auth login`` stored.

    Raises:
        ConfigError: Neither is set (the message says how to set one).
    """
    token = os.environ.get(token_env) or get_token()
    if not token:
        raise ConfigError(
            f"output.push_to_hub=true needs a Hub token: export {token_env}=hf_... (a token "
            "with write access) or run `hf auth login`; or set output.dry_run=true to only "
            "write the folder"
        )
    return token


def push_folder(
    folder: Path, repo_id: str, *, private: bool, token: str, commit_message: str
) -> Any:
    """Create the dataset repo if needed and upload ``folder`` as one commit.

    Parquet files in the repo that the folder no longer has are deleted in the
    same commit, so a repo pushed twice holds only the latest shards.

    Args:
        folder: The Hub folder (see :func:`write_hub_folder`).
        repo_id: ``<user or org>/<name>``.
        private: Create the repo private (an existing repo keeps its visibility).
        token: A Hub token with write access.
        commit_message: The commit's title.

    Returns:
        What ``HfApi.upload_folder`` returns (the commit info).
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    logger.info("uploading %s to https://huggingface.co/datasets/%s", folder, repo_id)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=commit_message,
        delete_patterns=["*.parquet"],
    )
