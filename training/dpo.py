"""Direct Preference Optimisation with TRL's ``DPOTrainer``, the Tulu 3 recipe as a preset, and the
``dpo`` job kind.

Pairs go to TRL in its conversational form (prompt turns, chosen and rejected assistant turns), so
the chat template is applied the way the model will be prompted. With LoRA the reference model is
the base with the adapters switched off (no second copy in memory); without, TRL loads one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from curation.errors import CuratorError
from curation.pairs import LABELS_HELP, parse_labels
from training import trainer_base as base
from training.config import TrainConfig
from training.data import ChatExample, load_training_data
from training.evaluate import check_suites
from training.sft import (
    EVAL_SETS_HELP,
    evaluate_generative_model,
    load_causal_lm,
    validate_eval_sets,
)

# TRL 1.16's DPO losses (trl/trainer/dpo_config.py, ``loss_type``).
LOSS_TYPES = (
    "sigmoid",
    "sigmoid_norm",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
)

# Tulu 3's DPO recipe for its 8B model. Sources: Lambert et al. 2024, "Tulu 3: Pushing Frontiers in
# Open Language Model Post-Training" (arXiv:2411.15124), the DPO hyperparameter table; and the
# exact command in allenai/open-instruct docs/tulu3.md ("Llama-3.1-Tulu-3-8B-DPO Reproduction":
# --dpo_loss_type dpo_norm --dpo_beta 5 --learning_rate 5e-07 --lr_scheduler_type linear
# --warmup_ratio 0.1 --num_train_epochs 1 --max_seq_length 2048, 8 GPUs x batch 1 x 16
# accumulation = 128 pairs per step).
TULU3_DPO = {
    # length-normalised DPO ("dpo_norm" in open-instruct): the log-ratio of each reply is divided
    # by its token count, which TRL implements as loss_type "sigmoid_norm"
    "loss_type": "sigmoid_norm",
    "beta": 5.0,  # high because the normalised log-ratios are per token, hence small
    "learning_rate": 5e-7,  # the 8B model's (70B and 405B used 2e-7)
    "warmup_ratio": 0.1,  # linear warmup then linear decay (the trainer's linear schedule)
    "epochs": 1.0,
    "max_length": 2048,
}
TULU3_EFFECTIVE_BATCH = 128  # pairs per optimiser step: batch_size x grad_accum
PRESETS = ("tulu3",)


@dataclass
class DPOTrainConfig(TrainConfig):
    """Direct Preference Optimisation (TRL DPOTrainer; default base: embedded SmolLM2)."""

    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=2, metadata={"help": "Pairs per device per step."})
    lora: bool = field(
        default=True,
        metadata={"help": "Train LoRA adapters (merged into the saved model); the base with "
                          "adapters off is the reference model."},
    )  # fmt: skip
    beta: float = field(
        default=0.1, metadata={"help": "How far the policy may move from the reference (β)."}
    )
    loss_type: str = field(
        default="sigmoid",
        metadata={"help": "TRL DPO loss: sigmoid (the DPO paper), sigmoid_norm (length-normalised, "
                          "Tulu 3), ipo, hinge, robust, ...", "choices": LOSS_TYPES},
    )  # fmt: skip
    preset: str | None = field(
        default=None,
        metadata={"help": "tulu3: Tulu 3's DPO recipe (length-normalised loss, β 5, lr 5e-7, "
                          "linear schedule, warmup 0.1, 1 epoch, 128 pairs per step, 2048 tokens); "
                          "it overrides those settings.", "choices": PRESETS},
    )  # fmt: skip
    labels: str = field(default="best", metadata={"help": LABELS_HELP})
    judge: str | None = field(
        default=None,
        metadata={"help": "The LM judge whose labels count (default: the one with most labels)."},
    )
    eval_sets: tuple[str, ...] = field(default=(), metadata={"help": EVAL_SETS_HELP})
    eval_limit: int = field(
        default=50,
        metadata={"help": "Held-out pairs scored, and prompts per eval suite, at most."},
    )
    max_new_tokens: int = field(
        default=256, metadata={"help": "Tokens generated per prompt in eval suites."}
    )

    def validate(self) -> DPOTrainConfig:
        if self.preset is not None:
            self.apply_preset()
        super().validate()
        parse_labels(self.labels)
        validate_eval_sets(self.eval_sets)
        if self.loss_type not in LOSS_TYPES:
            raise CuratorError(f"loss_type must be one of {', '.join(LOSS_TYPES)}")
        if self.beta <= 0:
            raise CuratorError("beta must be positive")
        if self.eval_limit < 1 or self.max_new_tokens < 1:
            raise CuratorError("eval_limit and max_new_tokens must be at least 1")
        return self

    def apply_preset(self) -> None:
        """Set the preset's hyperparameters (idempotent: a job's spec is validated again).

        The batch a device holds stays the user's choice (it is a memory limit); gradient
        accumulation makes up the preset's effective batch.
        """
        if self.preset not in PRESETS:
            raise CuratorError(f"unknown DPO preset {self.preset!r}; choose {', '.join(PRESETS)}")
        for name, value in TULU3_DPO.items():
            setattr(self, name, value)
        self.grad_accum = max(1, math.ceil(TULU3_EFFECTIVE_BATCH / self.batch_size))


def preference_dataset(tokenizer: Any, pairs: list, max_length: int) -> Any:
    """Pairs in TRL's conversational preference form, prompts shortened to leave room."""
    from datasets import Dataset

    rows = [
        {
            "prompt": base.fit_prompt(
                tokenizer, p.messages, max(p.chosen, p.rejected, key=len), max_length
            ),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    return Dataset.from_list(rows)


def train_dpo(ctx: Any, config: DPOTrainConfig) -> dict[str, Any]:
    """Train, evaluate, save and record a DPO model; returns the job result.

    Evaluation: TRL's DPO metrics on the held-out pairs (implicit reward accuracy and margin
    against the reference), the held-out loss of the chosen replies, and any eval suites.
    """
    config = config.validate()
    ctx.progress(0.0, "loading data")
    data = load_training_data(ctx.store, config, "pairs")
    check_suites(ctx.store, config.eval_sets)
    # TRL takes seconds to import: data a curator got wrong (a refused mixture) fails first.
    from trl import DPOConfig, DPOTrainer

    precision = base.prepare_run(config)
    model, tokenizer, base_name = load_causal_lm(config, ctx.workspace, precision)
    ctx.progress(0.02, f"preparing {len(data.train)} pairs")
    args = DPOConfig(
        **base.trainer_arguments(
            config,
            precision,
            ctx.run_dir / base.CHECKPOINT_DIR,
            beta=config.beta,
            loss_type=[config.loss_type],
        )
    )
    callback = base.job_callback(ctx)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=preference_dataset(tokenizer, data.train, config.max_length),
        processing_class=tokenizer,
        peft_config=base.lora_config(config, "CAUSAL_LM"),
        callbacks=[callback],
    )
    held_out = data.held_out[: config.eval_limit]

    def held_out_pairs() -> dict[str, Any]:
        """TRL's DPO metrics against the reference, which only the trainer still has."""
        if not held_out:
            return {}
        ctx.progress(0.86, f"DPO metrics on {len(held_out)} held-out pairs")
        held = trainer.evaluate(
            preference_dataset(tokenizer, held_out, config.max_length),
            metric_key_prefix="eval",
        )
        return {
            "held_out_pairs": {
                k.removeprefix("eval_"): v for k, v in held.items() if isinstance(v, int | float)
            }
        }

    chosen = [ChatExample((*p.prompt, ("assistant", p.chosen)), p.instance_id) for p in held_out]
    notes = [f"DPO loss {config.loss_type}, beta {config.beta}."]
    if config.preset == "tulu3":
        notes.append(
            "Tulu 3 DPO preset (arXiv:2411.15124; open-instruct docs/tulu3.md): length-normalised "
            "DPO, beta 5, lr 5e-7, linear schedule, warmup 0.1, 1 epoch, 128 pairs per step, "
            "2048 tokens."
        )
    if config.lora:
        notes.append(f"LoRA r={config.lora_r} on all linear layers, merged into these weights.")
    end = base.RunEnd(
        kind="dpo",
        base_model=base_name,
        data_stats=data.stats,
        notes=notes,
        saving_at=0.87,
        evaluate_trainer=held_out_pairs,
        evaluate_model=lambda trained: evaluate_generative_model(
            ctx, config, trained, tokenizer, chosen
        ),
        headline={
            f"eval_{key}": ("held_out_pairs", key)
            for key in ("rewards/accuracies", "rewards/margins", "loss")
        },
    )
    return base.train_and_record(ctx, config, trainer, tokenizer, callback, end)


def run_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``dpo`` job kind."""
    return train_dpo(ctx, DPOTrainConfig.from_spec(spec))
