"""Reward models: a Bradley-Terry scorer trained with TRL's ``RewardTrainer`` on preference pairs,
the scorer that reads a trained one back, and the ``reward`` job kind.

A response is scored in its conversation: through the tokenizer's chat template when it has one
(decoder models), else as a text pair "prompt [SEP] response" (encoders such as the default
MiniLM, which has neither a chat template nor an end-of-sequence token). Training and scoring
share :func:`encode_response`, so a model is always read the way it was trained. Sequences are
tokenised and fitted to ``max_length`` here, because TRL drops a pair that is too long instead of
truncating it: the prompt is cut first, from the left, so the reply being scored survives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CuratorError
from training.config import TrainConfig
from training.data import LABELS_HELP, PreferencePair, parse_labels
from training.trainer_base import chat_ids, conversation_text, keep_end


@dataclass
class RewardTrainConfig(TrainConfig):
    """Train a reward model (TRL RewardTrainer; default base: the shipped MiniLM, CPU-friendly)."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per device per step."})
    max_length: int = field(
        default=256,
        metadata={"help": "Tokens per prompt+reply (the prompt is cut first, from the left)."},
    )
    save_steps: int = field(
        default=100, metadata={"help": "Checkpoint every N steps (a requeued job resumes there)."}
    )
    labels: str = field(default="best", metadata={"help": LABELS_HELP})
    judge: str | None = field(
        default=None,
        metadata={"help": "The LM judge whose labels count (default: the one with most labels)."},
    )
    eval_set: str | None = field(
        default=None,
        metadata={"help": "RewardBench-format eval dataset in the workspace to score at the end."},
    )
    register_as_judge: str | None = field(
        default=None,
        metadata={"help": "Register the finished model as a judge under this name."},
    )
    center_rewards: float | None = field(
        default=None,
        metadata={
            "help": "Coefficient pulling rewards towards mean zero (e.g. 0.01); off if empty."
        },
    )

    def validate(self) -> RewardTrainConfig:
        super().validate()
        parse_labels(self.labels)
        return self


# ---- encoding and scoring --------------------------------------------------------------------


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
    """Scores responses with a reward model, in batches, the way :func:`train_reward` trained it."""

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

        from training.trainer_base import load_pretrained, run_info

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
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        scores = np.zeros(len(encoded), dtype=np.float64)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = self.tokenizer.pad(
                    {"input_ids": [encoded[i] for i in index]}, return_tensors="pt"
                ).to(device)
                logits = self.model(**batch).logits[:, 0].float().cpu().numpy()
                scores[index] = logits
        return scores

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """score(chosen) - score(rejected) per pair (> 0: the model agrees with the label)."""
        prompts = [p.messages for p in pairs]
        chosen = self.score(prompts, [p.chosen for p in pairs])
        rejected = self.score(prompts, [p.rejected for p in pairs])
        return chosen - rejected


# ---- training --------------------------------------------------------------------------------


def pair_dataset(tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int) -> Any:
    """Pairs as the pre-tokenised columns TRL's RewardTrainer takes as they are."""
    from datasets import Dataset

    prompts = [p.messages for p in pairs]
    return Dataset.from_dict(
        {
            "chosen_ids": [
                encode_response(tokenizer, m, p.chosen, max_length)
                for m, p in zip(prompts, pairs, strict=True)
            ],
            "rejected_ids": [
                encode_response(tokenizer, m, p.rejected, max_length)
                for m, p in zip(prompts, pairs, strict=True)
            ],
        }
    )


def load_reward_base(config: RewardTrainConfig, workspace: Any, precision: Any) -> tuple:
    """The base model with a one-logit head, its tokenizer, the usable max length and the base
    model's name."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training import trainer_base as base

    path, base_name = base.resolve_base_model("reward", config.base_model, workspace)
    tokenizer = base.load_pretrained(AutoTokenizer, path, "base model's tokenizer")
    model = base.load_pretrained(
        AutoModelForSequenceClassification,
        path,
        "base model",
        num_labels=1,
        dtype=precision.weights_dtype(config.lora),
    )
    if tokenizer.pad_token is None:  # decoder models often have none; TRL pads with it
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, model_max_length(tokenizer, model, config.max_length), base_name


def train_reward_scorer(
    workspace: Any, config: RewardTrainConfig, pairs: Sequence[PreferencePair], scratch: Path
) -> RewardScorer:
    """Train a reward model on ``pairs`` and return its scorer, keeping nothing on disk (no
    checkpoint, saved weights or run record): what a sweep needs for each of its many splits."""
    from trl import RewardConfig, RewardTrainer

    from training import trainer_base as base

    if not pairs:
        raise CuratorError("no labelled pairs to train a reward model on")
    precision = base.prepare_run(config)
    model, tokenizer, max_length, _ = load_reward_base(config, workspace, precision)
    arguments = base.trainer_arguments(
        config, precision, scratch, max_length=max_length,
        center_rewards_coefficient=config.center_rewards,
    ) | {"save_strategy": "no", "logging_strategy": "no"}  # fmt: skip
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(**arguments),
        train_dataset=pair_dataset(tokenizer, pairs, max_length),
        processing_class=tokenizer,
        peft_config=base.lora_config(config, "SEQ_CLS"),
    )
    trainer.train()
    return RewardScorer(
        trainer.model, tokenizer, max_length=max_length, batch_size=max(config.batch_size, 32)
    )


def train_reward(ctx: Any, config: RewardTrainConfig) -> dict[str, Any]:
    """Train, evaluate, save and record a reward model; returns the job result.

    ``ctx`` is a :class:`training.kinds.JobContext` or a :class:`training.trainer_base.LocalContext`.
    Evaluation: accuracy on the held-out pairs and, with ``eval_set``, the RewardBench score.
    """
    from training import trainer_base as base
    from training.data import load_training_data
    from training.evaluate import evaluate_reward_model, pair_accuracy

    config = config.validate()
    ctx.progress(0.0, "loading data")
    data = load_training_data(ctx.store, config, "pairs")
    if config.eval_set:
        from curation.evalsets import EvalSet

        EvalSet.load(ctx.store, config.eval_set)  # a wrong eval set fails now, not after training
    # TRL takes seconds to import: data a curator got wrong (a refused mixture) fails first.
    from trl import RewardConfig, RewardTrainer

    precision = base.prepare_run(config)
    model, tokenizer, max_length, base_name = load_reward_base(config, ctx.workspace, precision)
    ctx.progress(0.02, f"tokenising {len(data.train)} pairs")
    train_set = pair_dataset(tokenizer, data.train, max_length)
    args = RewardConfig(
        **base.trainer_arguments(
            config,
            precision,
            ctx.run_dir / base.CHECKPOINT_DIR,
            max_length=max_length,
            center_rewards_coefficient=config.center_rewards,
        )
    )
    callback = base.job_callback(ctx)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=base.lora_config(config, "SEQ_CLS"),
        callbacks=[callback],
    )
    metrics = base.fit(trainer, ctx, callback)
    ctx.progress(0.87, "saving the model")
    model_dir = ctx.run_dir / base.MODEL_DIR
    trained = base.save_model(trainer, tokenizer, model_dir)
    scorer = RewardScorer(
        trained, tokenizer, max_length=max_length, batch_size=max(config.batch_size, 32)
    )
    evaluation: dict[str, Any] = {}
    if data.held_out:
        ctx.progress(0.9, f"scoring {len(data.held_out)} held-out pairs")
        evaluation["held_out"] = pair_accuracy(scorer, data.held_out)
        metrics["eval_accuracy"] = evaluation["held_out"]["accuracy"]
    if config.eval_set:
        ctx.progress(0.94, f"scoring the eval set {config.eval_set}")
        key = f"rewardbench:{config.eval_set}"  # as evaluate_reward_run keys a later score
        evaluation[key] = evaluate_reward_model(ctx.store, scorer, config.eval_set)
    notes = [f"Inputs cut from the left to {max_length} tokens; scored with a linear head."]
    result = base.finish_run(
        ctx,
        config,
        kind="reward",
        base_model=base_name,
        model_dir=model_dir,
        data_stats=data.stats,
        metrics=metrics,
        evaluation=evaluation,
        notes=notes,
    )
    if config.register_as_judge:
        from training.reward_judge import register_reward_judge

        judge = register_reward_judge(ctx.store, result["run_id"], name=config.register_as_judge)
        result["judge"] = judge["name"]
    return result


def run_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``reward`` job kind."""
    return train_reward(ctx, RewardTrainConfig.from_spec(spec))


def sigmoid(x: float) -> float:
    """A numerically safe logistic function (Bradley-Terry's P(first beats second))."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
