"""A trained reward model read back: a response encoded in its conversation exactly as
:mod:`training.reward` trains on it, and the batched scorer that reads a model's reward for it.

A response is scored in its conversation: through the tokenizer's chat template when it has one
(decoder models), else as a text pair "prompt [SEP] response" (encoders such as the default
MiniLM, which has neither a chat template nor an end-of-sequence token). Sequences are fitted to
``max_length`` here, because TRL drops a pair that is too long instead of truncating it: the
prompt is cut first, from the left, so the reply being scored survives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data import PreferencePair
from training.inference import map_by_length
from training.trainer_base import chat_ids, conversation_text, keep_end, load_pretrained, run_info


def fit_pair(prefix: list[int], suffix: list[int], max_length: int, special: set[int]) -> list[int]:
    """Join a prompt's tokens and a reply's tokens within ``max_length``.

    The reply is what is scored, so it gets the room first: the prompt keeps what the reply
    leaves (at least a quarter of ``max_length``), cut from the left so the turn the reply
    answers stays; a reply that is still too long keeps its start and its closing token (the
    end-of-turn or [SEP] a model reads its score at).
    """
    if len(prefix) + len(suffix) <= max_length:
        return prefix + suffix
    keep = max(min(len(prefix), max_length // 4), max_length - len(suffix))
    prefix = keep_end(prefix, keep, special)
    room = max_length - len(prefix)
    if len(suffix) > room:
        suffix = suffix[: room - 1] + suffix[-1:]
    return prefix + suffix


def encode_response(
    tokenizer: Any, prompt: Sequence[dict[str, str]], response: str, max_length: int
) -> list[int]:
    """Token ids of one response in its conversation, at most ``max_length`` of them."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": response}], tokenize=False
        )
        full = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        head = chat_ids(tokenizer, prompt, add_generation_prompt=True)
    else:
        text = conversation_text(prompt)
        full = tokenizer(text, response, verbose=False)["input_ids"]
        head = tokenizer(text, verbose=False)["input_ids"]  # [CLS] prompt [SEP]
    split = 0
    while split < min(len(head), len(full)) and head[split] == full[split]:
        split += 1
    full = list(full)
    return fit_pair(full[:split], full[split:], max_length, set(tokenizer.all_special_ids))


def model_max_length(tokenizer: Any, model: Any, requested: int) -> int:
    """``requested``, capped at what the model's position embeddings allow."""
    limits = [requested]
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    return min(limits)


class RewardScorer:
    """Scores responses with a reward model, in batches, the way
    :func:`training.reward.train_reward` trained it."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int, batch_size: int = 32):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = model_max_length(tokenizer, model, max_length)
        self.batch_size = batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def load(
        cls, model_dir: str | Path, *, max_length: int | None = None, batch_size: int = 32
    ) -> RewardScorer:
        """A trained reward model from its folder (its training ``max_length`` unless given)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if max_length is None:
            max_length = int(run_info(model_dir).get("config", {}).get("max_length") or 512)
        tokenizer = load_pretrained(AutoTokenizer, str(model_dir), "reward model tokenizer")
        model = load_pretrained(
            AutoModelForSequenceClassification,
            str(model_dir),
            "reward model",
            num_labels=1,
            dtype=torch.float32,
        )
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(model, tokenizer, max_length=max_length, batch_size=batch_size)

    def score(
        self, prompts: Sequence[Sequence[dict[str, str]]], responses: Sequence[str]
    ) -> np.ndarray:
        """One reward per (prompt conversation, response), batched by length to pad little."""
        import torch

        encoded = [
            encode_response(self.tokenizer, p, r, self.max_length)
            for p, r in zip(prompts, responses, strict=True)
        ]
        device = next(self.model.parameters()).device

        def rewards(batch: list[list[int]]) -> Any:
            padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(device)
            return self.model(**padded).logits[:, 0].float().cpu().numpy()

        with torch.inference_mode():
            scores = map_by_length(encoded, self.batch_size, rewards)
        return np.asarray(scores, dtype=np.float64)

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """score(chosen) - score(rejected) per pair (> 0: the model agrees with the label)."""
        prompts = [p.messages for p in pairs]
        chosen = self.score(prompts, [p.chosen for p in pairs])
        rejected = self.score(prompts, [p.rejected for p in pairs])
        return chosen - rejected


def sigmoid(x: float) -> float:
    """A numerically safe logistic function (Bradley-Terry's P(first beats second))."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
