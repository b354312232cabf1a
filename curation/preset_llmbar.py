"""LLMBar (Zeng et al. 2023): gold-labelled instruction-following pairs with LLM judges' verdicts.

:func:`llmbar_records` joins each subset's ``dataset.json`` with the flattened ``judgments.csv``
so that one record carries one pair and every verdict on it; the ``llmbar`` preset imports the
gold label as a human label (``gold``) and each judge's verdict per evaluator, strategy and order
as an LM label (``GPT-4/Vanilla_NoRules/noswap``). Published figures average the two orders and
count an unparsed verdict as wrong: :func:`curation.agreement.judge_accuracy` with
``pool=llmbar_judge`` and ``missing_as_wrong=True``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.preset_fields import FieldError, Preset, register, require, text
from curation.records import Annotation, ImportedItem, Instance

LLMBAR_SUBSETS = (
    "LLMBar/Natural",
    "LLMBar/Adversarial/Neighbor",
    "LLMBar/Adversarial/GPTInst",
    "LLMBar/Adversarial/GPTOut",
    "LLMBar/Adversarial/Manual",
    "Processed/FairEval",
    "Processed/LLMEval2",
    "Processed/MT-Bench",
)
ORDERS = ("noswap", "swap")
GOLD = "gold"
# LLMBar labels: 1 output_1 better, 2 output_2 better; the store says A clearly / B clearly.
_SIDE = {1: -2, 2: 2}


def llmbar_judge(annotator: str) -> str:
    """The judge an order-specific label belongs to: ``GPT-4/CoT/swap`` -> ``GPT-4/CoT``."""
    head, _, order = annotator.rpartition("/")
    return head if order in ORDERS else annotator


def _side(field: str, value: Any) -> int:
    try:
        side = int(value)
    except (TypeError, ValueError):
        side = None
    if side not in _SIDE:
        raise FieldError(field, f"expected 1 or 2, got {value!r}")
    return side


def _llmbar(record: dict[str, Any]) -> ImportedItem:
    subset = text(record, "subset")
    idx = require(record, "idx")
    annotations = [Annotation("human", GOLD, overall=_SIDE[_side("label", record.get("label"))])]
    verdicts = record.get("verdicts") or {}
    if not isinstance(verdicts, dict):
        raise FieldError("verdicts", "expected {judge: {noswap: 1|2, swap: 1|2}}")
    unparsed = []
    for judge, by_order in sorted(verdicts.items()):
        if not isinstance(by_order, dict):
            raise FieldError("verdicts", f"{judge}: expected {{noswap: 1|2, swap: 1|2}}")
        for order in ORDERS:
            value = by_order.get(order)
            if value in (None, ""):
                unparsed.append(f"{judge}/{order}")
                continue
            evaluator = judge.split("/", 1)[0]
            annotations.append(
                Annotation(
                    "lm",
                    f"{judge}/{order}",
                    overall=_SIDE[_side(f"verdicts.{judge}.{order}", value)],
                    model=evaluator,
                )
            )
    instance = Instance(
        uid=f"{subset}/{idx}",
        prompt=text(record, "input"),
        response_a=text(record, "output_1", required=False) or "",
        response_b=text(record, "output_2", required=False) or "",
        source="LLMBar",
        domain=subset,
        subset=subset,
        metadata={"idx": idx, **({"unparsed_verdicts": unparsed} if unparsed else {})},
    )
    return ImportedItem(instance, annotations)


def llmbar_records(
    folder: str | os.PathLike,
    *,
    subsets: Iterable[str] = LLMBAR_SUBSETS,
    evaluators: Iterable[str] | None = None,
    strategies: Iterable[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """LLMBar's pairs (``datasets/<subset>/dataset.json``) with ``judgments.csv`` joined on
    (subset, idx): each record has subset, idx, input, output_1, output_2, label and
    ``verdicts`` {"<evaluator>/<strategy>": {"noswap": 1|2|None, "swap": 1|2|None}}.
    Write them as JSONL and import with the ``llmbar`` preset."""
    root = Path(folder)
    wanted_evaluators = set(evaluators) if evaluators is not None else None
    wanted_strategies = set(strategies) if strategies is not None else None
    verdicts: dict[tuple[str, int], dict[str, dict[str, int | None]]] = {}
    path = root / "judgments.csv"
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if wanted_evaluators is not None and row["evaluator"] not in wanted_evaluators:
                    continue
                if wanted_strategies is not None and row["strategy"] not in wanted_strategies:
                    continue
                cell = verdicts.setdefault((row["subset"], int(row["idx"])), {})
                cell[f"{row['evaluator']}/{row['strategy']}"] = {
                    order: int(row[f"winner_{order}"]) if row[f"winner_{order}"] else None
                    for order in ORDERS
                }
    except OSError as exc:
        raise CuratorError(f"{path}: cannot read it ({exc.strerror})") from exc
    for subset in subsets:
        source = root / "datasets" / subset / "dataset.json"
        try:
            rows = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CuratorError(f"{source}: cannot read it ({exc.strerror})") from exc
        for idx, row in enumerate(rows):
            yield {"subset": subset, "idx": idx, **row, "verdicts": verdicts.get((subset, idx), {})}


register(
    Preset(
        name="llmbar",
        kind="preference",
        description="LLMBar pairs: subset (domain), idx, input (prompt), output_1 (A), output_2 (B), "
        "label (gold: 1 or 2, a human label 'gold'); optional verdicts "
        "{'<evaluator>/<strategy>': {noswap, swap}} as LM labels '<evaluator>/<strategy>/<order>', "
        "as joined by llmbar_records()",
        signature=("input", "output_1", "output_2", "label"),
        convert=_llmbar,
        fields=("subset", "idx", "input", "output_1", "output_2", "label", "verdicts"),
    )
)
