"""Turn verified samples into training sets (TRL's conversational formats).

- SFT: ``messages`` = the prompt plus one assistant turn, whose text keeps the
  reasoning inside ``<think>...</think>`` before the answer.
- Pairs (REDI/DPO): ``prompt`` (messages), ``chosen`` and ``rejected`` (one
  assistant message each), from the same prompt, chosen verified correct and
  rejected verified incorrect.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import datasets

from datagen.records import MESSAGES, Sample, content_hash

SFT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "messages": MESSAGES,
        "reference": datasets.Value("string"),
        "model": datasets.Value("string"),
        "completion_tokens": datasets.Value("int32"),
        "pass_rate": datasets.Value("float64"),
    }
)

PAIR_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "prompt": MESSAGES,
        "chosen": MESSAGES,
        "rejected": MESSAGES,
        "chosen_sample_id": datasets.Value("string"),
        "rejected_sample_id": datasets.Value("string"),
        "model": datasets.Value("string"),
        "verifier": datasets.Value("string"),
    }
)


def assistant_text(sample: Sample) -> str:
    """The assistant turn: reasoning inside ``<think>`` (if any), then the answer."""
    if sample.reasoning:
        return f"<think>\n{sample.reasoning}\n</think>\n\n{sample.content}"
    return sample.content


def pass_rates(samples: Sequence[Sample]) -> dict[str, float]:
    """Share of verified-correct samples per problem (unverifiable ones not counted)."""
    graded: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        if s.passed is not None:
            graded[s.problem_id].append(bool(s.passed))
    return {pid: sum(v) / len(v) for pid, v in graded.items() if v}


def build_sft(samples: Sequence[Sample], passed: bool) -> datasets.Dataset:
    """SFT rows for samples whose verdict equals ``passed``."""
    rates = pass_rates(samples)
    rows = [
        {
            "id": s.id,
            "problem_id": s.problem_id,
            "messages": [*s.messages, {"role": "assistant", "content": assistant_text(s)}],
            "reference": s.reference,
            "model": s.model,
            "completion_tokens": s.completion_tokens,
            "pass_rate": rates.get(s.problem_id),
        }
        for s in samples
        if s.passed is passed
    ]
    return datasets.Dataset.from_list(rows, features=SFT_FEATURES)


def build_pairs(
    samples: Sequence[Sample], max_pairs_per_prompt: int, seed: int
) -> datasets.Dataset:
    """Pair verified-correct with verified-incorrect samples of the same prompt.

    Truncated samples never become ``chosen``. Each prompt gives at most
    ``max_pairs_per_prompt`` pairs, drawn without replacement by ``seed``.
    """
    by_problem: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_problem[s.problem_id].append(s)
    rows: list[dict[str, Any]] = []
    for pid, group in by_problem.items():
        good = [s for s in group if s.passed is True and not s.truncated]
        bad = [s for s in group if s.passed is False]
        combos = [(g, b) for g in good for b in bad]
        rng = random.Random(f"{seed}:{pid}")
        rng.shuffle(combos)
        for g, b in combos[:max_pairs_per_prompt]:
            rows.append(
                {
                    "id": content_hash(g.id, b.id),
                    "problem_id": pid,
                    "prompt": g.messages,
                    "chosen": [{"role": "assistant", "content": assistant_text(g)}],
                    "rejected": [{"role": "assistant", "content": assistant_text(b)}],
                    "chosen_sample_id": g.id,
                    "rejected_sample_id": b.id,
                    "model": g.model,
                    "verifier": ",".join(f"{v.verifier}@{v.verifier_version}" for v in g.verdicts),
                }
            )
    return datasets.Dataset.from_list(rows, features=PAIR_FEATURES)
