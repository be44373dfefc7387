"""Cards follow the Hub's dataset card conventions, and the lines they print work.

Each card's ``load_dataset`` lines are executed exactly as printed, against the
folders the emit stage wrote (real ``datasets``, no mocks), and the YAML header
is parsed with ``huggingface_hub.DatasetCard``, as the Hub parses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from datagen.output.builders import BuiltOutput
from datagen.output.card import HubFields, render_card
from datagen.output.formats import sft_features, to_dataset
from datagen.output.publish import load_output

from .test_output_publish import OUTPUTS, module_config, run_emit  # noqa: F401

LOAD_LINE = re.compile(r"^ds = load_dataset\(.*\)$", re.M)


def printed_load_lines(folder: Path) -> list[str]:
    """The ``ds = load_dataset(...)`` lines of the card's usage code block."""
    usage = (folder / "README.md").read_text(encoding="utf-8").split("## Usage")[1]
    return LOAD_LINE.findall(usage.split("```python\n")[1].split("```")[0])


def run_line(line: str) -> datasets.Dataset:
    scope = {"load_dataset": datasets.load_dataset}
    exec(line, scope)  # exactly what the card tells a user to run
    return scope["ds"]


@pytest.fixture(scope="module")
def written(module_config, tmp_path_factory):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("cards")
    config, ctx = run_emit(module_config, run_dir, "output.dry_run=true")
    return config, ctx, run_dir / "outputs"


def test_every_card_loads_with_the_lines_it_prints(written):
    _, ctx, out = written
    for folder, names in [*((out / n, [n]) for n in OUTPUTS), (out / "hub", list(OUTPUTS))]:
        lines = printed_load_lines(folder)
        assert len(lines) == len(names), folder
        for line, name in zip(lines, names, strict=True):
            assert f"{name}" in line
            loaded = run_line(line)
            on_disk = load_output(out / name)
            assert loaded.num_rows == ctx.stats["emit"][name] > 0
            assert loaded.to_list() == on_disk.to_list()


def test_the_card_names_each_output_as_a_config_the_hub_can_load(written):
    _, _, out = written
    for name in OUTPUTS:
        meta = DatasetCard.load(out / name / "README.md").data.to_dict()
        assert meta["configs"] == [
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"{name}.parquet"}],
                "default": True,
            }
        ]
        # load_dataset(folder, name) works too (a fresh cache: see card.load_line)
        cache = out.parent / f"hf-cache-{name}"
        by_name = datasets.load_dataset(str(out / name), name, split="train", cache_dir=str(cache))
        assert by_name.num_rows == load_output(out / name).num_rows


def test_card_metadata_has_the_hub_template_fields(written):
    config, _, out = written
    for folder in [*(out / n for n in OUTPUTS), out / "hub"]:
        card = DatasetCard.load(folder / "README.md")
        meta = card.data.to_dict()
        assert meta["license"] == "other"
        assert meta["license_name"] == "terms-of-sources-and-teacher"
        assert meta["license_link"] == "LICENSE.md"
        terms = (folder / "LICENSE.md").read_text(encoding="utf-8")
        assert "SmolLM2-135M-Instruct" in terms and "data/math_sample.jsonl" in terms
        assert meta["language"] == ["en"]
        assert "source_datasets" not in meta  # a local file is no Hub dataset
        assert "Prompts: the local file `data/math_sample.jsonl`." in card.text
        benchmarks = ", ".join(config.decontam.benchmarks)
        assert f"Decontamination: prompts were checked against {benchmarks}" in card.text
        assert "0 matched and were removed before generation" in card.text
    for name in OUTPUTS:
        text = DatasetCard.load(out / name / "README.md").text
        example = json.loads(text.split("### Example row\n\n```json\n")[1].split("```")[0])
        on_disk = load_output(out / name)
        assert list(example) == on_disk.column_names
        assert example["id"] == on_disk[0]["id"]
        trainer = "DPOTrainer" if name == "redi_pairs" else "SFTTrainer"
        assert f"from trl import {trainer[:3]}Config, {trainer}" in text


def test_named_sources_and_licences_replace_the_defaults(module_config, tmp_path):  # noqa: F811
    run_emit(
        module_config,
        tmp_path,
        "output.source_datasets=[EleutherAI/hendrycks_math]",
        "output.language=[en,fr]",
        "output.license_name=my-terms",
        "output.license_link=https://example.org/terms",
    )
    folder = tmp_path / "outputs" / "sft_positive"
    meta = DatasetCard.load(folder / "README.md").data.to_dict()
    assert meta["source_datasets"] == ["EleutherAI/hendrycks_math"]
    assert meta["language"] == ["en", "fr"]
    assert (meta["license_name"], meta["license_link"]) == ("my-terms", "https://example.org/terms")
    assert not (folder / "LICENSE.md").exists()  # the link points elsewhere


def test_a_known_licence_needs_no_name_or_link_and_no_decontamination_is_said():
    out = BuiltOutput("sft_positive", to_dataset([], sft_features()))
    text = render_card([out], {}, {"sft_positive": "x.parquet"}, title="t", license="mit")
    meta = DatasetCard(text).data.to_dict()
    assert meta["license"] == "mit" and "license_name" not in meta and "license_link" not in meta
    assert "Decontamination: not run" in text and "### Example row" not in text
    hub = HubFields(
        decontamination={
            "benchmarks": ["aime24"],
            "methods": ["ngram"],
            "contaminated": 2,
            "by_benchmark": {"aime24": 2},
        }
    )
    text = render_card([out], {}, {"sft_positive": "x.parquet"}, title="t", hub=hub)
    assert (
        "against aime24 (ngram); 2 matched and were removed before generation (aime24: 2)" in text
    )
