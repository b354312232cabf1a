"""What every trainer's config shares, and turning a job's JSON spec back into a config.

Each trainer module (``reward``, ``sft``, ``dpo``) declares its config as a dataclass that extends
:class:`TrainConfig`; the same dataclass is the job's spec (``to_spec``), the CLI's options and
the Jobs page's form through :mod:`curation.configs` (fields carry ``metadata["help"]``; field
types stay str, int, float, bool, their ``| None`` forms, and ``tuple[str, ...]``).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

from curation.configs import config_fields
from curation.errors import CuratorError

# config_fields lives in curation.configs (every config's front ends use it); kept importable here.
__all__ = ["TRAINER_KINDS", "TrainConfig", "config_class", "config_fields"]

TRAINER_KINDS = ("reward", "sft", "dpo")
_CONFIG_CLASSES = {
    "reward": "training.reward:RewardTrainConfig",
    "sft": "training.sft:SFTTrainConfig",
    "dpo": "training.dpo:DPOTrainConfig",
}
C = TypeVar("C", bound="TrainConfig")


@dataclass
class TrainConfig:
    """Settings every trainer has. Subclasses change the defaults and add their own."""

    dataset: str | None = field(default=None, metadata={"help": "Workspace dataset to train on."})
    mixture: str | None = field(
        default=None, metadata={"help": "Mixture to train on instead (name or name@version)."}
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "HF id or local folder (default: the embedded model for this trainer)."},
    )
    name: str = field(default="", metadata={"help": "Run name (default: kind, data and job id)."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training data."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimiser steps (-1: use epochs)."}
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Examples per device per step."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of steps spent warming up."})
    max_length: int = field(default=256, metadata={"help": "Tokens kept per example."})
    limit: int | None = field(
        default=None, metadata={"help": "Train on at most this many examples."}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of the data held out for evaluation loss."}
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) only."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a GPU that has it, else fp32), bf16, fp16 or fp32."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order and initialisation."})
    logging_steps: int = field(default=5, metadata={"help": "Log metrics every N steps."})
    save_steps: int = field(
        default=50, metadata={"help": "Checkpoint every N steps (a requeued job resumes there)."}
    )
    num_gpus: float | None = field(
        default=None,
        metadata={"help": "GPUs a Ray worker reserves for the job on its cluster (default: the "
                          "worker's --num-gpus); a local worker uses the machine's."},
    )  # fmt: skip

    def validate(self: C) -> C:
        if bool(self.dataset) == bool(self.mixture):
            raise CuratorError("name exactly one of dataset or mixture to train on")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise CuratorError("train for some epochs or some max_steps")
        for name in ("batch_size", "grad_accum", "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise CuratorError(f"{name} must be at least 1")
        if not 0 <= self.eval_fraction < 1:
            raise CuratorError("eval_fraction must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise CuratorError("warmup_ratio must be in [0, 1)")
        if self.learning_rate <= 0:
            raise CuratorError("learning_rate must be positive")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise CuratorError("precision must be auto, bf16, fp16 or fp32")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise CuratorError("num_gpus must be 0 or more")
        if self.limit is not None and self.limit < 2:
            raise CuratorError("limit must be at least 2 examples")
        return self

    def to_spec(self) -> dict[str, Any]:
        """The JSON a job stores (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_spec(cls: type[C], spec: dict[str, Any]) -> C:
        """A config from a job's spec; unknown keys are an error, not silently dropped."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - set(names) - {"retry_of"})
        if unknown:
            raise CuratorError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}")
        values = {}
        for key, value in spec.items():
            if key == "retry_of":
                continue
            if isinstance(value, list):
                value = tuple(value)
            values[key] = value
        return cls(**values).validate()


def config_class(kind: str) -> type[TrainConfig]:
    """The config dataclass of a trainer kind (``reward``, ``sft``, ``dpo``)."""
    target = _CONFIG_CLASSES.get(kind)
    if target is None:
        raise CuratorError(f"unknown trainer {kind!r}; choose {', '.join(TRAINER_KINDS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
