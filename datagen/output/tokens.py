"""Token counts for the length caps and the cards: a tokenizer's, or the teacher's own.

``output.tokenizer`` names what counts: a tokenizer folder, a ``.gguf`` file
(transformers reads the tokenizer out of it; the SmolLM2 teacher's file works),
or a Hub name that is already in the local cache. Nothing is downloaded when
``HF_HUB_OFFLINE=1``. Without a tokenizer the counts are those the teacher
reported (``prompt_tokens``, ``completion_tokens``), which is free and exact
for the teacher's own tokenizer.

The response is always counted as the whole trace (reasoning and answer), the
length that REDI's 19,000-token cap refers to, whatever ``reasoning_in_content``
says about where the reasoning is stored.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from datagen.config import ConfigError
from datagen.output.formats import assistant_text
from datagen.records import Sample

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)  # emit and the summary's report ask for the same one
def load_tokenizer(spec: str) -> Any:
    """Load a Hugging Face tokenizer from a folder, a ``.gguf`` file or a cached Hub name.

    Args:
        spec: The value of ``output.tokenizer``.

    Returns:
        A ``transformers`` tokenizer.

    Raises:
        ConfigError: It cannot be loaded (the message says what was tried).
    """
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ConfigError(f"output.tokenizer: no such GGUF file: {path}")
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else spec)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"output.tokenizer={spec!r} could not be loaded ({exc}); give a tokenizer folder, "
            "a .gguf file, or a Hub name present in the local cache, or null to use the "
            "teacher's token counts"
        ) from None


class TokenCounter:
    """Counts a sample's prompt and response tokens, remembering each sample's counts.

    Args:
        tokenizer: A ``transformers`` tokenizer, or None to use the teacher's counts.
        name: What to call it on cards (the ``output.tokenizer`` value).
    """

    def __init__(self, tokenizer: Any | None = None, name: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name or ("teacher-reported counts" if tokenizer is None else "tokenizer")
        self._prompt: dict[str, int] = {}
        self._response: dict[str, int] = {}

    @classmethod
    def from_spec(cls, spec: str | None) -> TokenCounter:
        """Build from ``output.tokenizer`` (None: the teacher's counts)."""
        if spec is None:
            return cls()
        return cls(load_tokenizer(spec), spec)

    def prompt_tokens(self, sample: Sample) -> int:
        """Tokens of the prompt as the model sees it (chat template and generation prompt)."""
        if self.tokenizer is None:
            return sample.prompt_tokens
        key = sample.problem_id
        if key not in self._prompt:
            self._prompt[key] = self._count_prompt(sample.messages)
        return self._prompt[key]

    def response_tokens(self, sample: Sample) -> int:
        """Tokens of the whole trace: reasoning (in ``<think>``) and answer."""
        if self.tokenizer is None:
            return sample.completion_tokens
        if sample.id not in self._response:
            text = assistant_text(sample, reasoning_in_content=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._response[sample.id] = len(ids)
        return self._response[sample.id]

    def _count_prompt(self, messages: list[dict[str, str]]) -> int:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict):  # some versions return a BatchEncoding
                ids = ids["input_ids"]
            return len(ids)
        text = "\n".join(m["content"] for m in messages)
        return len(tok(text, add_special_tokens=False)["input_ids"])


def over_length(
    sample: Sample,
    counter: TokenCounter,
    max_prompt_tokens: int | None,
    max_response_tokens: int | None,
) -> str | None:
    """Which length cap the sample breaks (``"prompt"`` or ``"response"``), or None."""
    if max_prompt_tokens is not None and counter.prompt_tokens(sample) > max_prompt_tokens:
        return "prompt"
    if max_response_tokens is not None and counter.response_tokens(sample) > max_response_tokens:
        return "response"
    return None
