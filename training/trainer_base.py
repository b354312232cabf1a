"""What the reward, SFT and DPO trainers share: device and precision, the base model, the TRL
arguments every trainer gets, the callback that reports to the job, resuming, saving the model
with its card, and recording the run.

Each trainer module (``reward``, ``sft``, ``dpo``) builds its TRL trainer and hands it to
:func:`train_and_record`, which ends every run the same way: :func:`fit` (train, resuming from
the job's checkpoint, stopping on cancel), :func:`save_model` (merged weights and tokenizer in
``<run dir>/model``), the trainer's own evaluation (a :class:`RunEnd`) and :func:`finish_run`
(the ``runs`` row, the model card, the job's result). torch, transformers, TRL and PEFT are
imported inside functions, so importing a config class stays cheap.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from curation.embeddings import DEFAULT_ENCODER, ENCODER_ALIASES, shipped_encoder
from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from routing.judges import ROLE_NAMES
from routing.models import DEFAULT_MODEL, is_default, resolve_model
from training.config import TrainConfig
from training.kinds import JobCancelled
from training.runs import record_run

if TYPE_CHECKING:  # pragma: no cover
    from transformers import TrainerCallback

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
RUN_INFO = "curator-run.json"  # machine-readable card beside README.md (scorers read max_length)
CHECKPOINTS_KEPT = 2
# Share of a job's progress bar that training takes; evaluation and saving share the rest.
TRAIN_SPAN = (0.05, 0.85)


class Context(Protocol):
    """What a trainer needs from its caller: a :class:`training.kinds.JobContext`, or a
    :class:`LocalContext` outside the queue."""

    store: Store
    workspace: Workspace

    @property
    def run_dir(self) -> Path: ...

    @property
    def resume_from(self) -> str | None: ...

    def progress(self, fraction: float, message: str | None = None) -> None: ...

    def metrics(self, step: int, **values: float) -> None: ...

    def checkpoint(self, path: str | Path) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class LocalContext:
    """A context for training outside the job queue (a script, a notebook): the same calls a job
    makes, kept in memory instead of the ``jobs`` tables. The run is still recorded in ``runs``."""

    store: Store
    workspace: Workspace
    folder: Path
    resume: str | None = None
    logged: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    last_progress: tuple[float, str | None] = (0.0, None)
    stop_requested: bool = False
    job: Any = None  # no job row: the run's job_id stays empty

    @classmethod
    def create(cls, store: Store, name: str, *, resume: str | None = None) -> LocalContext:
        """A context whose run folder is ``runs/<name>-<UTC time>`` in the store's workspace."""
        if store.workspace is None:
            raise CuratorError("training needs a workspace store (Store.open(workspace))")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        return cls(store, store.workspace, store.workspace.dir("runs") / f"{name}-{stamp}", resume)

    @property
    def run_dir(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    @property
    def resume_from(self) -> str | None:
        return self.resume if self.resume and Path(self.resume).exists() else None

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.last_progress = (fraction, message)

    def metrics(self, step: int, **values: float) -> None:
        self.logged.append((step, values))

    def checkpoint(self, path: str | Path) -> None:
        self.checkpoints.append(str(path))

    def should_stop(self) -> bool:
        return self.stop_requested


def job_id_of(ctx: Context) -> int | None:
    job = getattr(ctx, "job", None)
    return getattr(job, "id", None)


# ---- text and tokens ------------------------------------------------------------------------

Messages = list[dict[str, str]]


def conversation_text(messages: Sequence[dict[str, str]]) -> str:
    """The prompt side as plain text for a model without a chat template: a single user turn as
    it is, a longer conversation as a "User: ... / Assistant: ..." transcript."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def keep_end(ids: list[int], max_length: int, special_ids: set[int]) -> list[int]:
    """Cut a token sequence from the left to ``max_length``, keeping a leading special token
    ([CLS], <s>) so the model still sees the start marker it was pretrained with."""
    if len(ids) <= max_length:
        return ids
    head = ids[:1] if ids and ids[0] in special_ids else []
    return head + ids[len(ids) - (max_length - len(head)) :]


def chat_ids(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool
) -> list[int]:
    """Token ids of a conversation through the chat template (a plain transcript without one)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    text = conversation_text(messages) + ("\n\n" if add_generation_prompt else "")
    return list(tokenizer(text, verbose=False)["input_ids"])


def fit_prompt(
    tokenizer: Any, prompt: Sequence[dict[str, str]], reply: str, max_length: int
) -> Messages:
    """Shorten a prompt conversation so its reply keeps room within ``max_length``.

    TRL keeps the start of a long sequence and drops an example whose prompt alone fills
    ``max_length``, so an over-long prompt would cost the whole example. The prompt may take what
    the reply leaves, but at most half when the reply is long: the oldest turns go first (a
    system turn stays), then the start of the earliest remaining turn.
    """
    reply_tokens = len(tokenizer(reply, add_special_tokens=False, verbose=False)["input_ids"]) + 8
    budget = max(max_length - min(reply_tokens, max_length // 2), 8)
    messages = [dict(m) for m in prompt]
    if len(chat_ids(tokenizer, messages, add_generation_prompt=True)) <= budget:
        return messages
    first = 1 if messages[0]["role"] == "system" and len(messages) > 2 else 0
    while (
        len(messages) - first > 1
        and len(chat_ids(tokenizer, messages, add_generation_prompt=True)) > budget
    ):
        del messages[first]
    excess = len(chat_ids(tokenizer, messages, add_generation_prompt=True)) - budget
    if excess > 0:
        content = tokenizer(messages[first]["content"], add_special_tokens=False, verbose=False)
        kept = content["input_ids"][excess:]
        messages[first]["content"] = tokenizer.decode(kept) if kept else ""
    return messages


# ---- device, precision, base model ---------------------------------------------------------


def training_argument_names() -> set[str]:
    """The settings this transformers version's TrainingArguments has (names move between
    releases, and the old ones warn or mean something else)."""
    import dataclasses

    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


@dataclass(frozen=True)
class Precision:
    """Where and in what precision a run trains."""

    device: str  # "cuda" or "cpu"
    name: str  # "bf16", "fp16" or "fp32"

    def weights_dtype(self, lora: bool) -> Any:
        """bf16 weights only for a frozen base under LoRA on a GPU; anything trained in full keeps
        fp32 master weights (bf16/fp16 then run as autocast), and CPUs compute bf16 slowly."""
        import torch

        if self.device == "cuda" and self.name == "bf16" and lora:
            return torch.bfloat16
        return torch.float32

    def trainer_args(self) -> dict[str, Any]:
        """TRL defaults to bf16 and gradient checkpointing; on a CPU those made a reward step
        20-30x slower (LAB-NOTES), so a CPU run turns both off and pins itself to the CPU."""
        # transformers 5.2x renamed gradient checkpointing; the old name still works but warns
        checkpointing = (
            "activation_checkpointing"
            if "activation_checkpointing" in training_argument_names()
            else "gradient_checkpointing"
        )
        on_cpu = self.device == "cpu"
        return {
            "bf16": self.name == "bf16",
            "fp16": self.name == "fp16",
            "use_cpu": on_cpu,
            checkpointing: not on_cpu,
        }


def choose_precision(requested: str = "auto") -> Precision:
    """``auto``: the GPU with bf16 when it has it (fp32 on older GPUs), else the CPU in fp32."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if requested == "auto":
        name = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    elif requested == "fp16" and not cuda:
        raise CuratorError("fp16 training needs a GPU; use fp32 (or bf16) on a CPU")
    elif requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise CuratorError("this GPU has no bf16; use fp16 or fp32")
    elif requested in ("bf16", "fp16", "fp32"):
        name = requested
    else:
        raise CuratorError("precision must be auto, bf16, fp16 or fp32")
    return Precision(device, name)


def prepare_run(config: TrainConfig) -> Precision:
    """Seed everything (a fresh reward head or LoRA initialisation included, so a run repeats
    exactly), keep library progress bars out of job logs, and choose device and precision."""
    import datasets
    import transformers

    transformers.set_seed(config.seed)
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    return choose_precision(config.precision)


def resolve_base_model(kind: str, base_model: str | None, workspace: Workspace) -> tuple[str, str]:
    """(what to load, the name to record) for a trainer's base model.

    A reward model starts from the shipped MiniLM by default (an encoder trains on a CPU in
    minutes); SFT and DPO start from the embedded SmolLM2, converted once per workspace. The
    embedded SmolLM2 (``smollm2``) is also a valid reward-model base; any HF id or folder is
    used as given.
    """
    name = (base_model or "").strip()
    if kind == "reward" and (not name or name.lower() in ENCODER_ALIASES):
        return str(shipped_encoder()), DEFAULT_ENCODER
    if kind == "reward" and not is_default(name):
        return name, name
    return resolve_model(name or None, workspace), (
        DEFAULT_MODEL if is_default(name or None) else name
    )


def load_pretrained(loader: Callable[..., Any], path: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with a curator's error for a model that cannot be found."""
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise CuratorError(f"cannot load the {what} {path!r}: {str(exc).splitlines()[0]}") from exc


def lora_config(config: TrainConfig, task_type: str) -> Any:
    """PEFT LoRA on every linear layer (the QLoRA paper's choice), or None without ``lora``."""
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type=task_type,
    )


def trainer_arguments(
    config: TrainConfig, precision: Precision, output_dir: Path, **extra: Any
) -> dict[str, Any]:
    """The TRL config arguments every trainer shares (each adds its own through ``extra``)."""
    # transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a share of steps)
    warmup = "warmup_ratio" if "warmup_ratio" in training_argument_names() else "warmup_steps"
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        warmup: config.warmup_ratio,
        "lr_scheduler_type": "linear",
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": CHECKPOINTS_KEPT,
        "eval_strategy": "no",
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": [],
        "disable_tqdm": True,  # progress goes to the job row; bars only clutter its log
        "dataloader_pin_memory": precision.device == "cuda",
        "max_length": config.max_length,
        **precision.trainer_args(),
        **extra,
    }


# ---- running ---------------------------------------------------------------------------------


def job_callback(ctx: Context) -> TrainerCallback:
    """A transformers callback that reports a run to its job: logged numbers to
    ``ctx.metrics``, steps to ``ctx.progress``, saved checkpoints to ``ctx.checkpoint``, and a
    cancel request (``ctx.should_stop``) into a checkpoint and a clean stop."""
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        def __init__(self) -> None:
            self.cancelled = False
            self.started = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()  # the trainer's data preparation is not training

        def on_log(self, args, state, control, logs=None, **kwargs):
            numbers = {
                k: float(v)
                for k, v in (logs or {}).items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            }
            if numbers:
                ctx.metrics(int(state.global_step), **numbers)

        def on_step_end(self, args, state, control, **kwargs):
            total = max(int(state.max_steps or 0), 1)
            low, high = TRAIN_SPAN
            ctx.progress(
                low + (high - low) * min(state.global_step / total, 1.0),
                f"step {state.global_step}/{total}",
            )
            if ctx.should_stop():
                # Save where we are, so a retried job continues from here.
                self.cancelled = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                ctx.checkpoint(folder)
            return control

    return JobCallback()


def checkpoint_step(path: str | Path) -> int | None:
    """The global step a TRL checkpoint folder was saved at (None when it is not one)."""
    state = Path(path) / "trainer_state.json"
    try:
        return int(json.loads(state.read_text())["global_step"])
    except (OSError, ValueError, KeyError):
        return None


def fit(trainer: Any, ctx: Context, callback: Any) -> dict[str, Any]:
    """Train, resuming from the job's checkpoint when it has one; returns the train metrics with
    ``global_step`` and ``resumed_from_step``. Raises JobCancelled after a requested stop (its
    checkpoint is saved first)."""
    resume = ctx.resume_from
    resumed_from = checkpoint_step(resume) if resume else None
    if resume and resumed_from is None:
        print(f"{resume} is not a trainer checkpoint; starting from the beginning", flush=True)
        resume = None
    ctx.progress(TRAIN_SPAN[0], "training" if resume is None else f"resuming at {resumed_from}")
    output = trainer.train(resume_from_checkpoint=resume)
    if callback.cancelled:
        raise JobCancelled(f"stopped at step {trainer.state.global_step}")
    metrics = {k: v for k, v in output.metrics.items() if isinstance(v, int | float)}
    return metrics | {
        "global_step": int(trainer.state.global_step),
        "resumed_from_step": resumed_from,
        "train_seconds": round(time.monotonic() - callback.started, 2),
    }


def save_model(trainer: Any, tokenizer: Any, model_dir: Path) -> Any:
    """Write the trained model and its tokenizer as a plain HF folder; LoRA adapters are merged
    into the base first, so the folder loads (and serves in vLLM) without PEFT. Returns the
    (merged) model."""
    from peft import PeftModel

    model = trainer.model
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model


# ---- the card and the run --------------------------------------------------------------------


def _table(values: dict[str, Any]) -> list[str]:
    """A two-column Markdown table; generation samples stay in the run, not in the card."""
    lines = ["| setting | value |", "|---|---|"]
    for key, value in values.items():
        if key == "samples":
            continue
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, dict | list | tuple):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        text = text.replace("|", r"\|")  # a bar would end the cell
        lines.append(f"| {key} | {text} |")
    return lines


def model_card(
    *,
    kind: str,
    name: str,
    base_model: str,
    data: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    run_id: int | None,
    notes: list[str] | None = None,
) -> str:
    """A model card (README.md) in the Hugging Face layout: YAML header, then what was trained
    from what, with which settings, and how it scored."""
    import transformers
    import trl

    titles = {"reward": "reward model", "sft": "SFT model", "dpo": "DPO model"}
    lines = [
        "---",
        f"base_model: {base_model}",
        "library_name: transformers",
        f"tags: [hybrid-curator, trl, {kind}]",
        "---",
        "",
        f"# {name}",
        "",
        f"A {titles.get(kind, kind)} trained by Hybrid Curator on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
        f"(run {run_id}, TRL {trl.__version__}, transformers {transformers.__version__}).",
        "",
        f"- Base model: `{base_model}`",
    ]
    lines += [f"- {note}" for note in notes or []]
    lines += ["", "## Data", "", *_table(data), "", "## Configuration", "", *_table(config)]
    lines += ["", "## Training metrics", "", *_table(metrics), "", "## Evaluation", ""]
    if evaluation:
        for section, values in evaluation.items():
            lines += [f"### {section}", ""]
            lines += _table(values) if isinstance(values, dict) else [str(values)]
            lines.append("")
    else:
        lines += ["Not evaluated yet.", ""]
    return "\n".join(lines)


def run_name(config: TrainConfig, kind: str, ctx: Context) -> str:
    if config.name:
        return config.name
    data = config.dataset or config.mixture or "data"
    job_id = job_id_of(ctx)
    return f"{kind}-{data}-job{job_id}" if job_id else f"{kind}-{data}-{ctx.run_dir.name}"


def finish_run(
    ctx: Context,
    config: TrainConfig,
    *,
    kind: str,
    base_model: str,
    model_dir: Path,
    data_stats: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Record the run in ``runs``, write its model card and machine-readable info beside the
    weights, and return the job's result."""
    name = run_name(config, kind, ctx)
    spec = config.to_spec()
    run_id = record_run(
        ctx.store,
        kind=kind,
        name=name,
        job_id=job_id_of(ctx),
        dataset=config.dataset,
        mixture=config.mixture,
        base_model=base_model,
        config=spec | {"data": data_stats},
        metrics=metrics,
        evaluation=evaluation,
        artifact_path=str(model_dir),
    )
    card = model_card(
        kind=kind,
        name=name,
        base_model=base_model,
        data=data_stats,
        config=spec,
        metrics=metrics,
        evaluation=evaluation,
        run_id=run_id,
        notes=notes,
    )
    (model_dir / "README.md").write_text(card, encoding="utf-8")
    info = {"run_id": run_id, "kind": kind, "name": name, "base_model": base_model, "config": spec}
    (model_dir / RUN_INFO).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    ctx.progress(1.0, "done")
    return {
        "run_id": run_id,
        "name": name,
        "artifact_path": str(model_dir),
        "metrics": metrics,
        "evaluation": evaluation,
        "data": data_stats,
    }


@dataclass
class RunEnd:
    """What one trainer adds to the end every run shares (:func:`train_and_record`)."""

    kind: str  # "reward", "sft" or "dpo"
    base_model: str  # the recorded name of the base model
    data_stats: dict[str, Any]
    notes: list[str]  # lines for the model card
    saving_at: float  # the progress fraction shown while the model is saved
    # Scores that need the trainer as it is before saving (DPO's, against its reference model).
    evaluate_trainer: Callable[[], dict[str, Any]] | None = None
    # Scores of the saved (merged) model, given that model.
    evaluate_model: Callable[[Any], dict[str, Any]] | None = None
    # metric name -> (evaluation section, value): headline numbers copied into the run's metrics
    headline: dict[str, tuple[str, str]] = field(default_factory=dict)


def train_and_record(
    ctx: Context,
    config: TrainConfig,
    trainer: Any,
    tokenizer: Any,
    callback: Any,
    end: RunEnd,
) -> dict[str, Any]:
    """Train, evaluate, save and record a run; returns the job's result.

    The order every trainer keeps: train (:func:`fit`), the trainer's own evaluation, saving the
    model (:func:`save_model`), evaluating the saved model, then the run's row, card and result
    (:func:`finish_run`) with the headline evaluation numbers among its metrics.
    """
    metrics = fit(trainer, ctx, callback)
    evaluation = end.evaluate_trainer() if end.evaluate_trainer else {}
    ctx.progress(end.saving_at, "saving the model")
    model_dir = ctx.run_dir / MODEL_DIR
    trained = save_model(trainer, tokenizer, model_dir)
    if end.evaluate_model:
        evaluation |= end.evaluate_model(trained)
    for metric, (section, key) in end.headline.items():
        if key in evaluation.get(section, {}):
            metrics[metric] = evaluation[section][key]
    return finish_run(
        ctx,
        config,
        kind=end.kind,
        base_model=end.base_model,
        model_dir=model_dir,
        data_stats=end.data_stats,
        metrics=metrics,
        evaluation=evaluation,
        notes=end.notes,
    )


def run_info(model_dir: str | Path) -> dict[str, Any]:
    """The machine-readable info a trained model folder carries ({} for any other folder)."""
    try:
        return json.loads((Path(model_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return {}
