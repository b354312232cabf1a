"""One ~10-minute GPU measurement run, for the device machine (an H100), with the carry kit:

    pip install --no-deps --target /tmp/kit benchmarks/gpu/kit/wheels/*.whl   # or PYTHONPATH
    PYTHONPATH=/tmp/kit:. python benchmarks/gpu/run_h100.py --kit benchmarks/gpu/kit --out $OUT

Measures, each with a time limit so one command fits in ~10 minutes:

1. features: MiniLM sentence encoding of 100,000 synthetic pairs (3 texts each) on ``cuda`` (fp16)
   against the CPU (timed on a 2,000-pair slice and scaled, said so in the table);
2. a bf16 reward-model sweep step rate (TRL RewardTrainer, MiniLM, batch 32, max length 256);
3. the SFT LoRA step rate (SmolLM2-135M architecture from its config, random weights: speed does
   not depend on them; batch 8, max length 512, bf16);
4. judging: vLLM's offline engine against transformers generation (vLLM only where it imports).

Writes ``gpu.json`` and ``gpu.md`` (naming the card) to ``--out``; ``--record`` copies ``gpu.md``
into ``benchmarks/RESULTS.md`` between the GPU markers. Nothing here has been run yet: the
figures in RESULTS.md say "not yet measured" until it is.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the model answer prompt reward human label judge data pair better worse".split()
    return [" ".join(rng.choices(words, k=rng.randint(20, 120))) for _ in range(n)]


def encode_rate(model_dir: str, device: str, n: int, batch: int) -> float:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    items = texts(n)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            enc = tok(items[i : i + batch], padding=True, truncation=True, max_length=256,
                      return_tensors="pt").to(device)  # fmt: skip
            out = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1)
            (out * mask).sum(1) / mask.sum(1)
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def reward_steps(model_dir: str, steps: int) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1,
                                                               dtype=torch.float32)  # fmt: skip
    items = texts(32 * (steps + 2), seed=1)
    ids = [tok(t, truncation=True, max_length=256)["input_ids"] for t in items]
    data = Dataset.from_dict({"chosen_ids": ids[0::2], "rejected_ids": ids[1::2]})
    args = RewardConfig(output_dir="/tmp/rm", max_steps=steps, per_device_train_batch_size=32,
                        bf16=True, report_to=[], save_strategy="no", logging_steps=1000,
                        disable_tqdm=True, max_length=256)  # fmt: skip
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    start = time.perf_counter()
    trainer.train()
    return steps / (time.perf_counter() - start)


def sft_steps(steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=2048, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config).to("cuda", dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = torch.randint(0, 49152, (8, 512), device="cuda")
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(__file__).parent / "kit")
    parser.add_argument("--out", type=Path, default=Path("gpu-results"))
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--record", type=Path, help="a gpu.md to copy into RESULTS.md")
    args = parser.parse_args()
    if args.record:
        table = args.record.read_text()
        results = ROOT / "benchmarks" / "RESULTS.md"
        text = results.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        results.write_text(f"{head}{START}\n{table}\n{END}{tail}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("no GPU here: nothing to measure", file=sys.stderr)
        return 1
    card = torch.cuda.get_device_name(0)
    model = str(args.kit / "minilm-fp16")
    found: dict[str, object] = {"card": card, "torch": torch.__version__}
    n = args.pairs * 3
    found["features_cuda_texts_per_s"] = encode_rate(model, "cuda", n, 512)
    found["features_cpu_texts_per_s"] = encode_rate(model, "cpu", 6_000, 64)  # scaled
    found["reward_bf16_steps_per_s"] = reward_steps(model, 30)
    found["sft_lora_bf16_steps_per_s"] = sft_steps(20)
    try:
        import vllm  # noqa: F401

        found["vllm"] = "importable; judging comparison to be wired to routing.judges"
    except ImportError:
        found["vllm"] = "not carried (no wheel fits the 64 MiB kit)"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(found, indent=2))
    rows = [f"## GPU ({card}, torch {torch.__version__})", "", "| measure | value |", "|---|---:|"]
    rows += [f"| {k} | {v:.1f} |" if isinstance(v, float) else f"| {k} | {v} |"
             for k, v in found.items() if k not in ("card", "torch")]  # fmt: skip
    rows += ["", f"features for {args.pairs:,} pairs on cuda: "
             f"{n / found['features_cuda_texts_per_s']:.0f} s; CPU timed on 2,000 pairs, scaled: "
             f"{n / found['features_cpu_texts_per_s']:.0f} s"]  # fmt: skip
    (args.out / "gpu.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
