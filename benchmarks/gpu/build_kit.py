"""Build the carry kit for one GPU run: the pure-Python wheels the device image lacks (trl, peft,
lightgbm) and the shipped MiniLM re-saved in fp16, all under 64 MiB (what one device call takes).

    python benchmarks/gpu/build_kit.py [--out benchmarks/gpu/kit]

The device image has torch, transformers, accelerate, peft and sentence-transformers but no trl or
lightgbm (LAB-NOTES); wheels are downloaded for its Python (3.12) without dependencies.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LIMIT = 64 * 1024**2
WHEELS = ("trl", "peft", "lightgbm")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "kit")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args()
    wheels = args.out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", args.python_version, "--dest", str(wheels), *WHEELS],
        check=True,
    )  # fmt: skip
    import torch
    from transformers import AutoModel, AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from curation.embeddings import shipped_encoder

    source = shipped_encoder()
    model = AutoModel.from_pretrained(source, dtype=torch.float16)
    model.save_pretrained(args.out / "minilm-fp16")
    AutoTokenizer.from_pretrained(source).save_pretrained(args.out / "minilm-fp16")
    size = folder_bytes(args.out)
    print(f"kit at {args.out}: {size / 1024**2:.1f} MiB")
    if size > LIMIT:
        print(f"too big for one device call ({LIMIT // 1024**2} MiB)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
