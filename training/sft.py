"""Supervised fine-tuning with TRL's ``SFTTrainer`` through the model's chat template, and the
``sft`` job kind.

Each example is a conversation whose last assistant turn is learnt (TRL's prompt-completion form:
the loss is on the reply only; earlier turns are context). Over-long prompts are shortened before
TRL sees them (:func:`training.trainer_base.fit_prompt`), since TRL drops an example whose prompt
alone fills ``max_length``. At the end the model is scored: held-out loss, then any eval suites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curation.errors import CuratorError
from curation.pairs import LABELS_HELP, parse_labels
from training import trainer_base as base
from training.config import TrainConfig
from training.data import load_training_data
from training.evaluate import Generator, check_suites, heldout_loss, parse_suite, run_suites

EVAL_SETS_HELP = (
    "Suites scored on greedy generations at the end: xstest:<csv>, safety:<dataset>, "
    "gsm8k:<jsonl>, ifeval:<jsonl>."
)


@dataclass
class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning (TRL SFTTrainer, chat template; default base: embedded SmolLM2)."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=4, metadata={"help": "Conversations per device per step."})
    lora: bool = field(
        default=True, metadata={"help": "Train LoRA adapters (merged into the saved model)."}
    )
    labels: str = field(
        default="best",
        metadata={"help": "For preference data, which reply is learnt: " + LABELS_HELP},
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "The LM judge whose labels count (default: the one with most labels)."},
    )
    eval_sets: tuple[str, ...] = field(default=(), metadata={"help": EVAL_SETS_HELP})
    eval_limit: int = field(
        default=50,
        metadata={"help": "Held-out examples scored, and prompts per eval suite, at most."},
    )
    max_new_tokens: int = field(
        default=256, metadata={"help": "Tokens generated per prompt in eval suites."}
    )

    def validate(self) -> SFTTrainConfig:
        super().validate()
        parse_labels(self.labels)
        validate_eval_sets(self.eval_sets)
        if self.eval_limit < 1 or self.max_new_tokens < 1:
            raise CuratorError("eval_limit and max_new_tokens must be at least 1")
        return self


def validate_eval_sets(eval_sets: tuple[str, ...]) -> None:
    for suite in eval_sets:
        if parse_suite(suite)[0] == "heldout":
            raise CuratorError("held-out loss is always measured; list only named eval suites")


def chat_dataset(tokenizer: Any, examples: list, max_length: int) -> Any:
    """Chat examples in TRL's conversational prompt-completion form."""
    from datasets import Dataset

    rows = [
        {
            "prompt": base.fit_prompt(tokenizer, e.prompt, e.completion[0]["content"], max_length),
            "completion": e.completion,
        }
        for e in examples
    ]
    return Dataset.from_list(rows)


def load_causal_lm(config: TrainConfig, workspace: Any, precision: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, recorded base name) of an SFT or DPO run's base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, base_name = base.resolve_base_model("sft", config.base_model, workspace)
    tokenizer = base.load_pretrained(AutoTokenizer, path, "base model's tokenizer")
    model = base.load_pretrained(
        AutoModelForCausalLM, path, "base model", dtype=precision.weights_dtype(config.lora)
    )
    if not getattr(tokenizer, "chat_template", None):
        raise CuratorError(
            f"the base model {base_name!r} has no chat template; SFT and DPO train chat models "
            "(use an instruct model's tokenizer, or one that defines a chat template)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, base_name


def evaluate_generative_model(
    ctx: Any, config: Any, model: Any, tokenizer: Any, held_out: list
) -> dict[str, Any]:
    """Held-out loss and the config's eval suites on a just-trained causal LM."""
    evaluation: dict[str, Any] = {}
    held_out = held_out[: config.eval_limit]  # the same first examples for every run on this data
    if held_out:
        ctx.progress(0.88, f"held-out loss on {len(held_out)} examples")
        evaluation["heldout"] = heldout_loss(
            model, tokenizer, held_out, max_length=config.max_length, batch_size=8
        )
    if config.eval_sets:
        generator = Generator(model, tokenizer, batch_size=8)
        evaluation |= run_suites(
            generator,
            config.eval_sets,
            store=ctx.store,
            limit=config.eval_limit,
            max_new_tokens=config.max_new_tokens,
            progress=lambda f, m: ctx.progress(0.9 + 0.08 * f, m),
        )
    return evaluation


def train_sft(ctx: Any, config: SFTTrainConfig) -> dict[str, Any]:
    """Fine-tune, evaluate, save and record an SFT model; returns the job result."""
    config = config.validate()
    ctx.progress(0.0, "loading data")
    data = load_training_data(ctx.store, config, "chat")
    check_suites(ctx.store, config.eval_sets)
    # TRL takes seconds to import: data a curator got wrong (a refused mixture) fails first.
    from trl import SFTConfig, SFTTrainer

    precision = base.prepare_run(config)
    model, tokenizer, base_name = load_causal_lm(config, ctx.workspace, precision)
    ctx.progress(0.02, f"preparing {len(data.train)} conversations")
    args = SFTConfig(**base.trainer_arguments(config, precision, ctx.run_dir / base.CHECKPOINT_DIR))
    callback = base.job_callback(ctx)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=chat_dataset(tokenizer, data.train, config.max_length),
        processing_class=tokenizer,
        peft_config=base.lora_config(config, "CAUSAL_LM"),
        callbacks=[callback],
    )
    notes = ["Loss on the final assistant turn of each conversation (earlier turns are context)."]
    if config.lora:
        notes.append(f"LoRA r={config.lora_r} on all linear layers, merged into these weights.")
    end = base.RunEnd(
        kind="sft",
        base_model=base_name,
        data_stats=data.stats,
        notes=notes,
        saving_at=0.86,
        evaluate_model=lambda trained: evaluate_generative_model(
            ctx, config, trained, tokenizer, data.held_out
        ),
        headline={"eval_loss": ("heldout", "loss")},
    )
    return base.train_and_record(ctx, config, trainer, tokenizer, callback, end)


def run_job(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``sft`` job kind."""
    return train_sft(ctx, SFTTrainConfig.from_spec(spec))
