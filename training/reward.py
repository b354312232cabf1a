"""Reward models: a Bradley-Terry scorer trained with TRL's ``RewardTrainer`` on preference pairs,
and the ``reward`` job kind.

Training and scoring share :func:`training.reward_scorer.encode_response` (a response in its
conversation, fitted to ``max_length``), so a model is always read the way it was trained; the
scorer that reads a trained one back is :class:`training.reward_scorer.RewardScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.evalsets import EvalSet
from curation.pairs import LABELS_HELP, parse_labels
from training import trainer_base as base
from training.config import TrainConfig
from training.data import PreferencePair, load_training_data
from training.evaluate import evaluate_reward_model, pair_accuracy
from training.reward_judge import register_reward_judge
from training.reward_scorer import RewardScorer, encode_response, model_max_length


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
    config = config.validate()
    ctx.progress(0.0, "loading data")
    data = load_training_data(ctx.store, config, "pairs")
    if config.eval_set:
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

    def score(trained: Any) -> dict[str, Any]:
        scorer = RewardScorer(
            trained, tokenizer, max_length=max_length, batch_size=max(config.batch_size, 32)
        )
        evaluation: dict[str, Any] = {}
        if data.held_out:
            ctx.progress(0.9, f"scoring {len(data.held_out)} held-out pairs")
            evaluation["held_out"] = pair_accuracy(scorer, data.held_out)
        if config.eval_set:
            ctx.progress(0.94, f"scoring the eval set {config.eval_set}")
            key = f"rewardbench:{config.eval_set}"  # as evaluate_reward_run keys a later score
            evaluation[key] = evaluate_reward_model(ctx.store, scorer, config.eval_set)
        return evaluation

    end = base.RunEnd(
        kind="reward",
        base_model=base_name,
        data_stats=data.stats,
        notes=[f"Inputs cut from the left to {max_length} tokens; scored with a linear head."],
        saving_at=0.87,
        evaluate_model=score,
        headline={"eval_accuracy": ("held_out", "accuracy")},
    )
    result = base.train_and_record(ctx, config, trainer, tokenizer, callback, end)
    if config.register_as_judge:
        judge = register_reward_judge(ctx.store, result["run_id"], name=config.register_as_judge)
        result["judge"] = judge["name"]
    return result


def run_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``reward`` job kind."""
    return train_reward(ctx, RewardTrainConfig.from_spec(spec))
