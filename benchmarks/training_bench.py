"""Training speed on this machine: samples/s and tokens/s of each trainer as Hybrid Curator sets it
up, against TRL's own defaults for the same work.

The same model, data, batch and number of steps run twice per trainer: once with the settings
``training.trainer_base`` chooses for the device (on a CPU: fp32, no gradient checkpointing), once
with TRL 1.16's defaults (bf16 and gradient checkpointing on, which LAB-NOTES measured 20x slower
on these CPUs). The first step of each run is a warm-up and is not timed. Models: the shipped MiniLM
(reward) and the embedded SmolLM2-135M with LoRA r16 (SFT, DPO), on demo data.

    .venv/bin/python benchmarks/training_bench.py                  # 1 timed step each (~4 min)
    .venv/bin/python benchmarks/training_bench.py --steps 5 --max-length 128

Writes benchmarks/results/training_bench.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curation.demo import build_demo  # noqa: E402
from curation.store import Store  # noqa: E402
from curation.workspace import Workspace  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work" / "training_bench"
RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = ("curator", "trl-defaults")


def _timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return StepTimer()


def _tokens_per_example(dataset, columns: tuple[str, ...]) -> float:
    total = sum(len(row[c]) for row in dataset for c in columns if c in row)
    return total / max(len(dataset), 1)


def _run(kind: str, setting: str, store: Store, workspace: Workspace, args) -> dict:
    """Train ``args.steps + 1`` steps of one trainer in one setting; time all but the first."""
    import transformers
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    from training import trainer_base as base
    from training.data import load_training_data
    from training.dpo import DPOTrainConfig, preference_dataset
    from training.reward import RewardTrainConfig, pair_dataset
    from training.sft import SFTTrainConfig, chat_dataset, load_causal_lm

    common = {
        "dataset": "demo-sft" if kind == "sft" else "demo-prefs",
        "max_steps": args.steps + 1,
        "max_length": args.max_length,
        "logging_steps": 1000,
        "save_steps": 10_000,
        "eval_fraction": 0.0,
    }
    precision = base.choose_precision("fp32")
    if kind == "reward":
        config = RewardTrainConfig(batch_size=args.reward_batch, **common).validate()
    elif kind == "sft":
        config = SFTTrainConfig(batch_size=args.batch, **common).validate()
    else:
        config = DPOTrainConfig(batch_size=args.batch, **common).validate()
    transformers.set_seed(0)
    transformers.utils.logging.disable_progress_bar()
    extra = {"save_strategy": "no", "disable_tqdm": True}
    trl_args = base.trainer_arguments(config, precision, WORK / "out" / kind, **extra)
    if setting == "trl-defaults":  # leave precision and checkpointing to TRL
        for key in ("bf16", "fp16", "activation_checkpointing", "gradient_checkpointing"):
            trl_args.pop(key, None)
    timer = _timer()
    data = load_training_data(store, config, "pairs" if kind != "sft" else "chat")
    if kind == "reward":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path, _ = base.resolve_base_model("reward", None, workspace)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        trainer = RewardTrainer(
            model=model,
            args=RewardConfig(**trl_args),
            train_dataset=pair_dataset(tokenizer, data.train, args.max_length),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        per_example = _tokens_per_example(trainer.train_dataset, ("chosen_ids", "rejected_ids"))
    else:
        model, tokenizer, _ = load_causal_lm(config, workspace, precision)
        lora = base.lora_config(config, "CAUSAL_LM")
        if kind == "sft":
            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(**trl_args),
                train_dataset=chat_dataset(tokenizer, data.train, args.max_length),
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[timer],
            )
            per_example = _tokens_per_example(trainer.train_dataset, ("input_ids",))
        else:
            trainer = DPOTrainer(
                model=model,
                args=DPOConfig(**trl_args),
                train_dataset=preference_dataset(tokenizer, data.train, args.max_length),
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[timer],
            )
            per_example = _tokens_per_example(
                trainer.train_dataset, ("prompt_ids", "chosen_ids", "rejected_ids")
            )
            per_example += _tokens_per_example(trainer.train_dataset, ("prompt_ids",))
    per_example = min(per_example, 2 * args.max_length if kind != "sft" else args.max_length)
    trainer.train()
    timed = timer.ends[1:]
    seconds = (timed[-1] - timer.ends[0]) / len(timed)
    batch = config.batch_size * config.grad_accum
    return {
        "trainer": kind,
        "setting": setting,
        "bf16": bool(trainer.args.bf16),
        "checkpointing": bool(trainer.args.gradient_checkpointing),
        "batch": batch,
        "s_per_step": round(seconds, 3),
        "samples_per_s": round(batch / seconds, 2),
        "tokens_per_s": round(batch * per_example / seconds, 1),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Training speed: Hybrid Curator's settings against TRL's defaults",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- command: `{report['command']}`",
        "- same model, data, batch and steps per pair of rows; the first step is not timed",
        "",
        "| trainer | setting | bf16 | checkpointing | batch | s/step | samples/s | tokens/s "
        "| speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["runs"]:
        lines.append(
            f"| {row['trainer']} | {row['setting']} | {row['bf16']} | {row['checkpointing']} | "
            f"{row['batch']} | {row['s_per_step']} | {row['samples_per_s']} | "
            f"{row['tokens_per_s']} | {row.get('speedup', '')} |"
        )
    lines += ["", "Details: training_bench.json beside this file.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1, help="timed steps per run")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2, help="SFT and DPO batch")
    parser.add_argument("--reward-batch", type=int, default=8)
    parser.add_argument("--trainers", nargs="+", default=["reward", "sft", "dpo"])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    import torch

    from routing.models import ensure_default_model

    workspace = Workspace(WORK).ensure()
    runs = []
    with Store.open(workspace) as store:
        if not store.find_dataset("demo-prefs"):
            build_demo(store, n_pairs=64)
        ensure_default_model(workspace)
        load = os.getloadavg()[0]
        for kind in args.trainers:
            pair = [_run(kind, setting, store, workspace, args) for setting in SETTINGS]
            pair[0]["speedup"] = f"x{pair[1]['s_per_step'] / pair[0]['s_per_step']:.1f}"
            runs += pair
            for row in pair:
                print(json.dumps(row), flush=True)
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, load average {load:.1f} at start, "
        f"Python {platform.python_version()}",
        "command": "python benchmarks/training_bench.py " + " ".join(sys.argv[1:]),
        "runs": runs,
    }
    print(markdown(report))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "training_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "training_bench.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
