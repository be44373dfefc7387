"""The emit stage's files: output folders, cards the Hub parses, the dry-run folder, push_to_hub.

The Hub is unreachable from here, so ``push_to_hub`` is tested with one mock:
``HfApi`` (the Hub client) is replaced by a recorder. Everything before that
call is our real code: token lookup, building, cards, writing the folder. The
recorder checks the folder it is handed loads back with ``load_dataset``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard

from datagen.config import ConfigError
from datagen.output import publish
from datagen.output.builders import BuiltOutput
from datagen.output.card import render_card
from datagen.output.formats import pair_features, to_dataset
from datagen.output.publish import load_output
from datagen.stages.base import StageContext
from datagen.stages.emit import emit

from .test_output_builders import trace_samples

OUTPUTS = ("sft_positive", "sft_negative", "redi_pairs")


def load(folder: Path, name: str | None = None) -> datasets.Dataset:
    """``load_dataset(folder, name)`` with a fresh cache.

    datasets caches a local folder with YAML configs under (folder name, config
    name) without the files' identity, so two different folders named ``hub``
    would share one cache entry (datasets 5.2); a private cache_dir avoids that.
    """
    cache = Path(tempfile.mkdtemp(prefix="hf-cache-"))
    try:
        return datasets.load_dataset(str(folder), name, split="train", cache_dir=str(cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def run_emit(make_config, run_dir: Path, *overrides: str, samples=None):
    config = make_config("+pipeline=math", *overrides)
    ctx = StageContext(config=config, run_dir=run_dir)
    batch = trace_samples() if samples is None else samples
    emit(batch, ctx, cfg={"output": config.output, "run.seed": config.run.seed})
    return config, ctx


@pytest.fixture(scope="module")
def module_config():
    from datagen.compose import resolve_config

    from .conftest import compose

    def _make(*overrides: str):
        return resolve_config(compose(*overrides))

    return _make


@pytest.fixture(scope="module")
def dry_run(module_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dry")
    config, ctx = run_emit(
        module_config, run_dir, "output.dry_run=true", "output.repo_id=someone/math-redi"
    )
    return config, ctx, run_dir / "outputs"


def test_dry_run_folder_loads_back_with_load_dataset(dry_run):
    _, ctx, out = dry_run
    hub = out / "hub"
    assert sorted(p.name for p in hub.iterdir()) == ["LICENSE.md", "README.md", *sorted(OUTPUTS)]
    default = load(hub)
    assert default.num_rows == ctx.stats["emit"]["sft_positive"]
    for name in OUTPUTS:
        loaded = load(hub, name)
        written = load_output(out / name)
        assert loaded.num_rows == written.num_rows == ctx.stats["emit"][name] > 0
        assert loaded.column_names == written.column_names
        assert loaded.to_list() == written.to_list()
        # the per-output folders load on their own too
        assert load(out / name).num_rows == written.num_rows
        assert not (out / name / "arrow").exists()  # the Parquet file is the one copy


def test_save_arrow_also_writes_a_load_from_disk_copy(module_config, tmp_path):
    _, ctx = run_emit(module_config, tmp_path, "output.save_arrow=true")
    for name in OUTPUTS:
        folder = tmp_path / "outputs" / name
        copy = datasets.load_from_disk(str(folder / "arrow"))
        assert copy.features == load_output(folder).features
        assert copy.to_list() == load_output(folder).to_list()
        assert len(copy) == ctx.stats["emit"][name]


def test_card_metadata_parses_with_huggingface_hub(dry_run):
    config, _, out = dry_run
    card = DatasetCard.load(out / "hub" / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "other"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["pretty_name"] == "someone/math-redi"
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert list(configs) == list(OUTPUTS) and configs["sft_positive"]["default"] is True
    assert configs["redi_pairs"]["data_files"] == [
        {"split": "train", "path": "redi_pairs/train-*.parquet"}
    ]
    body = card.text
    for heading in ("## Verification", "## Generation", "## Resolved config"):
        assert heading in body
    assert "math@1" in body and "| mean pass rate over prompts | 0.5 |" in body  # 8 of 16
    assert "Lengths in tokens (teacher-reported counts)" in body
    dumped = body.split("## Resolved config")[1].split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(dumped) == config.as_dict()
    for name in OUTPUTS:  # each output folder's own card parses too
        own = DatasetCard.load(out / name / "README.md").data.to_dict()
        assert own["configs"][0]["data_files"][0]["path"] == f"{name}.parquet"


def test_card_never_shows_secrets(dry_run):
    config, _, _ = dry_run
    plain = config.as_dict()
    secrets = {"api_key": "sk-live-123", "headers": {"Authorization": "Bearer x"}}
    plain["teacher"] = {**plain["teacher"], **secrets}
    out = BuiltOutput("redi_pairs", to_dataset([], pair_features()))
    text = render_card([out], plain, {"default": "x.parquet"}, title="t")
    assert "sk-live-123" not in text and "Bearer x" not in text and "<redacted>" in text


def test_empty_outputs_are_left_out_of_the_hub_folder(module_config, tmp_path):
    only_positives = [s for s in trace_samples() if s.passed]
    run_emit(module_config, tmp_path, "output.dry_run=true", samples=only_positives)
    hub = tmp_path / "outputs" / "hub"
    assert sorted(p.name for p in hub.iterdir()) == ["LICENSE.md", "README.md", "sft_positive"]
    card = DatasetCard.load(hub / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["sft_positive"]
    assert "Not included (no rows): sft_negative, redi_pairs." in card.text
    assert load(hub).num_rows == len(only_positives)
    for name in ("sft_negative", "redi_pairs"):  # still written, empty, in their own folders
        assert load_output(hub.parent / name).num_rows == 0


class RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi``, the only mocked part (the Hub is unreachable)."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, token: str | None = None) -> None:
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id: str, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        loaded = {n: load(folder, n).num_rows for n in OUTPUTS}
        self.calls.append(("upload_folder", {**kwargs, "loaded": loaded}))
        return "commit"


def test_push_to_hub_uploads_the_dry_run_folder_privately_with_the_env_token(
    module_config, tmp_path, monkeypatch
):
    RecordingHfApi.calls = []
    monkeypatch.setattr(publish, "HfApi", RecordingHfApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    _, ctx = run_emit(
        module_config, tmp_path, "output.push_to_hub=true", "output.repo_id=someone/math-redi"
    )
    names = [name for name, _ in RecordingHfApi.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    init, create, upload = (kw for _, kw in RecordingHfApi.calls)
    assert init == {"token": "hf_test_token"}
    assert create == {
        "repo_id": "someone/math-redi",
        "repo_type": "dataset",
        "private": True,
        "exist_ok": True,
    }
    assert Path(upload["folder_path"]) == tmp_path / "outputs" / "hub"
    assert upload["repo_id"] == "someone/math-redi" and upload["repo_type"] == "dataset"
    assert upload["loaded"] == {n: ctx.stats["emit"][n] for n in OUTPUTS}
    assert ctx.stats["emit"]["pushed_to_hub"] == 1


def test_push_without_a_token_fails_before_writing(module_config, tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "HfApi", RecordingHfApi)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(publish, "get_token", lambda: None)
    with pytest.raises(ConfigError, match="export HF_TOKEN"):
        run_emit(module_config, tmp_path, "output.push_to_hub=true", "output.repo_id=a/b")
    assert not (tmp_path / "outputs").exists()


def test_dry_run_with_push_uploads_nothing(module_config, tmp_path, monkeypatch):
    RecordingHfApi.calls = []
    monkeypatch.setattr(publish, "HfApi", RecordingHfApi)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    run_emit(
        module_config,
        tmp_path,
        "output.push_to_hub=true",
        "output.dry_run=true",
        "output.repo_id=a/b",
    )
    assert RecordingHfApi.calls == [] and (tmp_path / "outputs" / "hub" / "README.md").exists()
