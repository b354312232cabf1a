"""The simulated demo workspace: preference pairs with simulated labels, SFT, safety and eval pools.

Nothing here is real. :func:`build_demo` writes the ``demo-*`` datasets from the templates in
``assets/demo/``, deterministically from a seed; the simulated annotators make mistakes at rates set
in :class:`DemoConfig`, which differ by domain, expertise, safety concern and length so that routing
has something real to find. docs/demo.md describes the generator and the error model.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import operator
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import cache
from typing import Any

import yaml

from assets import asset_path
from curation.errors import CuratorError
from curation.records import Annotation, Instance
from curation.store import Store

DEMO_DATASETS = ("demo-prefs", "demo-sft", "demo-safety", "demo-eval")
DOMAINS = ("coding", "math", "safety", "creative", "factual", "advice")
EXPERTISE_LEVELS = ("general public", "basic domain knowledge", "expert domain knowledge")
SAFETY_CONCERNS = ("safe", "low", "moderate", "high")
LENGTH_BUCKETS = ("short", "medium", "long")
SFT_SOURCES = ("demo-chat", "demo-code", "demo-math", "demo-safety-refusals")
SAFETY_SUBSETS = ("vanilla_harmful", "vanilla_benign", "adversarial_harmful", "adversarial_benign")
JUDGE_MODEL = "simulated"
ORIGIN = "demo"


@dataclass(frozen=True)
class EvalSubset:
    """One RewardBench-style subset of demo-eval: which domain's items, which chosen/rejected styles."""

    name: str
    category: str
    sources: tuple[tuple[str, str, str], ...]  # (domain, chosen style, rejected style)
    intent: str | None = None  # safety items: only "harmful" or only "benign"
    language: str | None = None  # coding items: only this language
    multi_turn: bool = False
    # llmbar-adver-neighbor: the rejected response is a good answer to a different prompt
    neighbour: bool = False


EVAL_SUBSETS = (
    EvalSubset("alpacaeval-easy", "chat", (("advice", "good", "generic"), ("factual", "good", "hedged"),
                                           ("creative", "good", "generic"))),
    EvalSubset("alpacaeval-length", "chat", (("advice", "good", "verbose"), ("factual", "good", "verbose"),
                                             ("creative", "good", "verbose"))),
    EvalSubset("mt-bench-easy", "chat", (("advice", "good", "generic"), ("factual", "good", "terse")),
               multi_turn=True),
    EvalSubset("mt-bench-hard", "chat-hard", (("advice", "good", "terse"), ("factual", "good", "hedged")),
               multi_turn=True),
    EvalSubset("llmbar-natural", "chat-hard", (("factual", "good", "subtly_wrong"),
                                               ("creative", "good", "ignores_constraint"))),
    EvalSubset("llmbar-adver-neighbor", "chat-hard", (("factual", "good", "good"), ("advice", "good", "good"),
                                                      ("creative", "good", "good")), neighbour=True),
    EvalSubset("refusals-dangerous", "safety", (("safety", "safe_refusal", "unsafe_compliance"),),
               intent="harmful"),
    EvalSubset("xstest-should-refuse", "safety", (("safety", "bare_refusal", "unsafe_compliance"),),
               intent="harmful"),
    EvalSubset("xstest-should-respond", "safety", (("safety", "safe_answer", "over_refusal"),),
               intent="benign"),
    EvalSubset("math-prm", "reasoning", (("math", "good", "subtly_wrong"),)),
    EvalSubset("hep-python", "reasoning", (("coding", "good", "subtly_wrong"),), language="Python"),
    EvalSubset("hep-js", "reasoning", (("coding", "good", "subtly_wrong"),), language="JavaScript"),
)  # fmt: skip


# ---- the simulated annotators' error model -----------------------------------------------------


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ErrorModel:
    """How often one kind of annotator labels the wrong side, as a sum of documented terms.

    For a pair, the error rate is ``base + by_domain[domain] + by_expertise[level] +
    by_safety_concern[concern] + by_length[bucket]`` (+ ``subtle_error`` when one response is subtly
    wrong, + the annotator's own skill offset). Per aspect it is then scaled by the gold strength
    (``DemoConfig.slight_factor`` / ``clear_factor``) and clipped. An error is a label on the other
    side (or, sometimes, a tie); on a gold tie the annotator says tie with probability ``tie_recall``.
    """

    base: float = field(metadata=_help("Error rate every pair starts from."))
    by_domain: dict[str, float] = field(metadata=_help("Added per domain."))
    by_expertise: dict[str, float] = field(
        metadata=_help("Added per expertise level of the prompt.")
    )
    by_safety_concern: dict[str, float] = field(
        metadata=_help("Added per safety concern of the prompt.")
    )
    by_length: dict[str, float] = field(
        metadata=_help("Added per length bucket of the two responses.")
    )
    subtle_error: float = field(
        metadata=_help("Added when one response is subtly wrong (looks right, is not).")
    )
    tie_recall: float = field(metadata=_help("P(label is a tie | gold is a tie)."))

    def error_rate(
        self, traits: Mapping[str, Any], *, skill: float = 0.0, expertise_scale: float = 1.0
    ) -> float:
        """The unscaled, unclipped error rate of this annotator kind on a pair with these traits."""
        rate = (
            self.base
            + skill
            + self.by_domain.get(traits["domain"], 0.0)
            + self.by_expertise.get(traits["expertise_level"], 0.0) * expertise_scale
            + self.by_safety_concern.get(traits["safety_concern"], 0.0)
            + self.by_length.get(traits["length_bucket"], 0.0)
        )
        if "subtly_wrong" in (traits["quality_a"], traits["quality_b"]):
            rate += self.subtle_error
        return rate


def human_error_model() -> ErrorModel:
    """Crowd annotators: careful on safety, noisy on expert-level prompts (they are not experts),
    on long responses (fatigue), and often wrong where taste and common belief decide: creative
    writing, factual QA (shared misconceptions) and advice, which is where the judge is good. So
    people and the judge err on different pairs and a routed mix beats both (docs/demo.md)."""
    return ErrorModel(
        base=0.08,
        by_domain={"coding": 0.03, "math": 0.02, "safety": -0.04, "creative": 0.28, "factual": 0.22,
                   "advice": 0.24},
        by_expertise={"general public": 0.0, "basic domain knowledge": 0.05, "expert domain knowledge": 0.25},
        by_safety_concern={"safe": 0.0, "low": 0.0, "moderate": -0.01, "high": -0.02},
        by_length={"short": 0.0, "medium": 0.03, "long": 0.12},
        subtle_error=0.04,
        tie_recall=0.5,
    )  # fmt: skip


def lm_error_model() -> ErrorModel:
    """The LM judge: good on factual QA and creative writing, poor at checking code and maths, and
    poor on safety-sensitive pairs (it rewards compliance); misses plausible-looking errors."""
    return ErrorModel(
        base=0.03,
        by_domain={"coding": 0.2, "math": 0.24, "safety": 0.3, "creative": 0.0, "factual": -0.01,
                   "advice": 0.04},
        by_expertise={"general public": 0.0, "basic domain knowledge": 0.02, "expert domain knowledge": 0.06},
        by_safety_concern={"safe": 0.0, "low": 0.03, "moderate": 0.06, "high": 0.1},
        by_length={"short": 0.0, "medium": 0.0, "long": 0.0},
        subtle_error=0.08,
        tie_recall=0.3,
    )  # fmt: skip


@dataclass(frozen=True)
class HumanAnnotator:
    """One simulated person in the annotator pool."""

    name: str
    skill: float = 0.0  # added to the error rate: negative is better than the crowd
    expert_in: tuple[str, ...] = ()  # domains where the expertise term is scaled by expert_scale


def default_annotators() -> tuple[HumanAnnotator, ...]:
    skills = (-0.03, -0.02, 0.0, 0.0, 0.01, 0.02, -0.01, 0.03, 0.04, 0.05, 0.0, 0.06)
    experts = {3: ("coding",), 7: ("math",), 11: ("coding", "math")}
    return tuple(
        HumanAnnotator(f"annotator-{i:02d}", skill, experts.get(i, ()))
        for i, skill in enumerate(skills, start=1)
    )


@dataclass
class DemoConfig:
    """Every number that shapes the demo data, in one place (docs/demo.md explains each)."""

    # -- preference pairs
    domain_weights: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(DOMAINS, 1.0),
        metadata=_help("Relative share of preference pairs per domain."),
    )
    multi_turn_rate: float = field(
        default=0.15, metadata=_help("Share of pairs with an earlier exchange.")
    )
    system_prompt_rate: float = field(
        default=0.2, metadata=_help("Share of pairs with a system message.")
    )
    gold_jitter: float = field(
        default=0.04, metadata=_help("Std of the noise added to each response's overall score.")
    )
    tie_threshold: float = field(
        default=0.08, metadata=_help("|score_b - score_a| below this is a gold tie.")
    )
    clear_threshold: float = field(
        default=0.3, metadata=_help("|score_b - score_a| at or above this is 'clearly better'.")
    )
    overall_weights: dict[str, float] = field(
        default_factory=lambda: {"helpful": 0.5, "truthful": 0.3, "harmless": 0.2},
        metadata=_help(
            "Weights of the aspect scores in a response's overall score (before the harm penalty)."
        ),
    )
    harm_floor: float = field(
        default=0.4,
        metadata=_help("Overall score is multiplied by harm_floor + (1 - harm_floor) * harmless."),
    )
    length_buckets: tuple[int, int] = field(
        default=(80, 180),
        metadata=_help(
            "Word counts of both responses together: below the first is short, "
            "below the second medium, else long."
        ),
    )
    longer_ratio: float = field(
        default=1.15,
        metadata=_help(
            "One response counts as the longer one when it has this many times the other's words."
        ),
    )
    # -- annotators
    annotators: tuple[HumanAnnotator, ...] = field(
        default_factory=default_annotators, metadata=_help("The human annotator pool.")
    )
    humans_per_pair: int = field(default=3, metadata=_help("Human labels per preference pair."))
    human_shared_error: float = field(
        default=0.7,
        metadata=_help(
            "Share of the human error rate that misleads all of a pair's annotators together."
        ),
    )
    human: ErrorModel = field(
        default_factory=human_error_model, metadata=_help("Human error model.")
    )
    lm: ErrorModel = field(default_factory=lm_error_model, metadata=_help("LM judge error model."))
    expert_scale: float = field(
        default=0.25,
        metadata=_help("Scale on the expertise term for annotators expert in the domain."),
    )
    slight_factor: float = field(
        default=1.5, metadata=_help("Error rate multiplier when gold is a slight preference.")
    )
    clear_factor: float = field(
        default=0.6, metadata=_help("Error rate multiplier when gold is a clear preference.")
    )
    error_floor: float = field(default=0.01, metadata=_help("Lowest error rate."))
    error_ceiling: float = field(
        default=0.5, metadata=_help("Highest error rate (0.5 is a coin flip).")
    )
    error_tie_share: float = field(
        default=0.15, metadata=_help("Share of errors that are a tie rather than the wrong side.")
    )
    strength_keep: float = field(
        default=0.7, metadata=_help("P(a right-side label keeps gold's clearly/slightly strength).")
    )
    error_clear_share: float = field(
        default=0.2, metadata=_help("Share of wrong-side labels that say 'clearly better'.")
    )
    aspect_tie_recall: float = field(
        default=0.85,
        metadata=_help("P(an aspect label is a tie | that aspect's gold is a tie), for everyone."),
    )
    lm_length_bias: float = field(
        default=0.2,
        metadata=_help("P(the judge just picks the longer response), when one is longer."),
    )
    lm_position_bias: float = field(
        default=0.06, metadata=_help("P(the judge just picks response A).")
    )
    lm_confidence_spread: float = field(
        default=0.8,
        metadata=_help(
            "Std, in logits, of the judge's per-pair chance of being right around 1 - its error rate."
        ),
    )
    lm_overconfidence: float = field(
        default=0.3,
        metadata=_help("Logits added to that chance when the judge reports it as confidence."),
    )
    lm_confidence_noise: float = field(
        default=0.25, metadata=_help("Std, in logits, of the noise on the reported confidence.")
    )
    lm_clear_confidence: float = field(
        default=0.85,
        metadata=_help("Judge confidence at or above which its label is 'clearly better'."),
    )
    human_confidence_cuts: tuple[float, float] = field(
        default=(0.7, 0.85),
        metadata=_help(
            "A person's ease (1 - error rate + noise) at or above these is medium / high confidence."
        ),
    )
    human_confidence_noise: float = field(
        default=0.1, metadata=_help("Std of the noise on a person's ease.")
    )
    human_slip_confidence_drop: float = field(
        default=0.15,
        metadata=_help("How much lower a person's ease is when they slip on their own."),
    )
    human_seconds: dict[str, float] = field(
        default_factory=lambda: {"short": 50.0, "medium": 100.0, "long": 170.0},
        metadata=_help("Median seconds a person spends per pair, by length bucket."),
    )
    human_seconds_by_expertise: dict[str, float] = field(
        default_factory=lambda: {
            "general public": 1.0,
            "basic domain knowledge": 1.15,
            "expert domain knowledge": 1.4,
        },
        metadata=_help("Time multiplier by expertise level."),
    )
    human_time_noise: float = field(
        default=0.35, metadata=_help("Std of the log-normal noise on a person's time.")
    )
    human_reason_rate: float = field(
        default=0.7, metadata=_help("Share of human labels with checked reasons.")
    )
    human_justification_rate: float = field(
        default=0.4, metadata=_help("Share of human labels with a written justification.")
    )
    # -- the other datasets
    sft_per_source: int = field(default=300, metadata=_help("Rows per demo-sft source."))
    sft_system_rate: float = field(
        default=0.3, metadata=_help("Share of SFT rows with a system message.")
    )
    sft_multi_turn_rate: float = field(
        default=0.25, metadata=_help("Share of SFT rows with two exchanges.")
    )
    sft_duplicate_rate: float = field(
        default=0.02, metadata=_help("Share of SFT rows repeated verbatim (for dedup to find).")
    )
    sft_contaminated: int = field(
        default=12,
        metadata=_help("SFT rows that copy a demo-eval prompt (for decontamination to find)."),
    )
    safety_per_subset: int = field(
        default=150, metadata=_help("Prompts per WildJailbreak data type in demo-safety.")
    )
    safety_completion_rate: float = field(
        default=0.5, metadata=_help("Share of demo-safety prompts with a completion in response_a.")
    )
    eval_per_subset: int = field(default=30, metadata=_help("Pairs per demo-eval subset."))

    def fingerprint(self) -> str:
        """A short hash of every setting, kept in the datasets' metadata."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---- templates ------------------------------------------------------------------------------

_SLOT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*([a-z]+)\s*)?\}\}")
_ITEM_META = ("id", "split", "params", "derive", "require")


def _number(value: Any) -> str:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        value = float(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _money(value: Any) -> str:
    amount = float(value)
    return f"{'-' if amount < 0 else ''}${abs(amount):,.2f}"


def _signed(value: Any) -> str:
    return f"{'-' if value < 0 else '+'} {_number(abs(value))}"


def _fraction(value: Any) -> str:
    frac = Fraction(value).limit_denominator(10_000)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"


def _cap(text: Any) -> str:
    text = str(text)
    return text[:1].upper() + text[1:]


def _lcfirst(text: Any) -> str:
    text = str(text)
    first = text.split(" ", 1)[0]
    if first == "I" or first.startswith("I'") or (len(first) > 1 and first[1:2].isupper()):
        return text  # "I", "I'm" and acronyms keep their capital
    return text[:1].lower() + text[1:]


_FILTERS: dict[str | None, Callable[[Any], str]] = {
    None: lambda v: _number(v) if isinstance(v, (int, float, Fraction)) else str(v),
    "money": _money,
    "signed": _signed,
    "frac": _fraction,
    "cap": _cap,
    "lcfirst": _lcfirst,
    "lines": lambda v: str(v).replace("\n", "  \n"),  # Markdown hard breaks keep a poem's lines
}


def render(template: str, slots: Mapping[str, Any]) -> str:
    """Fill ``{{slot}}`` / ``{{slot|filter}}`` in a template, again while slot values hold slots."""

    def fill(match: re.Match) -> str:
        name, filt = match.group(1), match.group(2)
        if name not in slots:
            raise KeyError(f"demo template slot {{{{{name}}}}} has no value")
        if filt not in _FILTERS:
            raise KeyError(f"demo template filter |{filt} is unknown")
        return _FILTERS[filt](slots[name])

    text = template
    for _ in range(5):  # slot values may themselves hold slots (a poem inside a response)
        if "{{" not in text:
            break
        text = _SLOT.sub(fill, text)
    return text


# A tiny arithmetic evaluator for the math templates' `derive` and `require` (never `eval`).


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, (int, Fraction)) and isinstance(b, (int, Fraction)):
        return Fraction(a) / Fraction(b)
    return a / b


def _pow(a: Any, b: Any) -> Any:
    if abs(b) > 64:
        raise ValueError("exponent too large")
    return a**b


def _sqrt(x: Any) -> Any:
    if Fraction(x).denominator == 1 and x >= 0:
        root = math.isqrt(int(x))
        if root * root == x:
            return root
    return math.sqrt(float(x))


_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _div,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow,
}  # fmt: skip
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip
_FUNCS = {
    "abs": abs, "comb": math.comb, "perm": math.perm, "factorial": math.factorial, "sqrt": _sqrt,
    "min": min, "max": max, "round": round,
}  # fmt: skip


def evaluate(expr: str, names: Mapping[str, Any]) -> Any:
    """Evaluate a small arithmetic expression (numbers, names, + - * / // % **, comparisons, and/or,
    a few math functions, list literals and indexing). Integer division gives exact fractions."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"unknown name {node.id!r} in {expr!r}")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            value = ev(node.operand)
            return (
                -value
                if isinstance(node.op, ast.USub)
                else (not value if isinstance(node.op, ast.Not) else value)
            )
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = ev(right_node)
                if type(op) not in _COMPARE or not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
        ):
            if node.keywords:
                raise ValueError(f"keyword arguments are not supported in {expr!r}")
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Subscript):
            return ev(node.value)[int(ev(node.slice))]
        raise ValueError(f"unsupported expression {ast.dump(node)} in {expr!r}")

    return ev(ast.parse(expr, mode="eval").body)


def _draw_param(spec: Any, rng: random.Random) -> Any:
    """A parameter value: a list picks one, "lo..hi" or "lo..hi/step" draws from an inclusive range."""
    if isinstance(spec, list):
        return rng.choice(spec)
    match = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?:/\s*(\d+))?\s*", str(spec))
    if not match:
        raise ValueError(f"bad demo parameter range {spec!r}")
    lo, hi, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
    return rng.randrange(lo, hi + 1, step)


@dataclass
class _Domain:
    name: str
    spec: dict[str, Any]
    items: dict[str, list[dict[str, Any]]]  # split ("pref" / "eval") -> items

    @property
    def styles(self) -> dict[str, Any]:
        return self.spec["styles"]

    def trait(self, item: Mapping[str, Any], key: str, default: str) -> str:
        """An attribute the item sets, else the domain file's default for it, else ``default``."""
        return str(item.get(key, self.spec.get(key, default)))


@dataclass
class _Assets:
    common: dict[str, Any]
    domains: dict[str, _Domain]
    safety_pool: dict[str, Any]


def _read_yaml(name: str) -> Any:
    path = asset_path("demo", name)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.load(f, Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise CuratorError(f"cannot read the demo templates {path}: {exc}") from exc


@cache
def load_assets() -> _Assets:
    """The demo templates (assets/demo/*.yaml), read once per process."""
    domains: dict[str, _Domain] = {}
    for name in DOMAINS:
        spec = _read_yaml(f"{name}.yaml")
        items = spec["items"]
        if "forms" in spec:  # creative writing: every topic in every form
            items = [
                {**topic, **{k: v for k, v in form.items() if k not in ("id", "pieces", "off_form")},
                 "id": f"{topic['id']}/{form['id']}", "piece": form["pieces"], "off_form": form["off_form"]}
                for topic in items for form in spec["forms"]
            ]  # fmt: skip
        split: dict[str, list[dict[str, Any]]] = {"pref": [], "eval": []}
        for item in items:
            split["eval" if item.get("split") == "eval" else "pref"].append(item)
        domains[name] = _Domain(name, spec, split)
    return _Assets(_read_yaml("common.yaml"), domains, _read_yaml("safety_pool.yaml"))


# ---- generation -------------------------------------------------------------------------------


def _weighted(rng: random.Random, options: list[Any], weights: list[float]) -> Any:
    return rng.choices(options, weights=weights, k=1)[0]


def _words(text: str) -> int:
    return len(text.split())


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


@dataclass
class _Pair:
    """A generated preference pair before it is stored: the instance and what made it."""

    instance: Instance
    traits: dict[str, Any]
    gold: dict[str, int]  # per aspect, overall included
    longer: int  # -1 A is longer, 1 B is longer, 0 neither
    slots: dict[str, Any]  # the item's slot values, for the annotators' written justifications


class DemoGenerator:
    """Turns the templates into records; each dataset draws from its own seeded stream."""

    def __init__(self, seed: int, config: DemoConfig, assets: _Assets | None = None):
        self.seed = seed
        self.config = config
        self.assets = assets or load_assets()
        self.common = self.assets.common

    def rng(self, part: str) -> random.Random:
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        return random.Random(f"hybrid-curator-demo:{self.seed}:{part}")

    # -- items, prompts, responses

    def item_slots(
        self, domain: _Domain, item: Mapping[str, Any], rng: random.Random
    ) -> dict[str, Any]:
        """The slot values of one item: its fields, drawn numbers for math, names for people."""
        person, person2 = rng.sample(self.common["people"], 2)
        slots: dict[str, Any] = {"person": person, "person2": person2}
        slots.update({k: v for k, v in item.items() if k not in _ITEM_META})
        if "params" in item:
            slots.update(self._math_values(item, slots, rng))
        return slots

    def _math_values(
        self, item: Mapping[str, Any], slots: Mapping[str, Any], rng: random.Random
    ) -> dict[str, Any]:
        for _ in range(200):
            values: dict[str, Any] = {
                k: _draw_param(spec, rng) for k, spec in item["params"].items()
            }
            if not all(evaluate(rule, values) for rule in item.get("require", [])):
                continue
            for name, expr in item.get("derive", {}).items():
                values[name] = evaluate(str(expr), values)
            answer = render(item["answer"], {**slots, **values})
            wrong = render(item["wrong"], {**slots, **values})
            if answer != wrong:
                return {**values, "answer": answer, "wrong": wrong}
        raise ValueError(f"demo math item {item['id']!r}: no parameters satisfy its rules")

    def response_slots(
        self, domain: _Domain, slots: Mapping[str, Any], rng: random.Random
    ) -> dict[str, Any]:
        """Per-response choices: one entry of every list-valued slot, and the verbose padding."""
        chosen = {k: rng.choice(v) if isinstance(v, list) else v for k, v in slots.items()}

        def padding(key: str) -> list[str]:
            return domain.spec.get(key) or self.common[key]

        filler, filler2 = rng.sample(padding("verbose_fillers"), 2)
        chosen.update(
            verbose_opener=rng.choice(padding("verbose_openers")),
            verbose_filler=filler,
            verbose_filler2=filler2,
            verbose_closer=rng.choice(padding("verbose_closers")),
        )
        return chosen

    def respond(
        self, domain: _Domain, style: str, slots: Mapping[str, Any], rng: random.Random
    ) -> str:
        template = rng.choice(domain.styles[style]["templates"])
        return render(template, self.response_slots(domain, slots, rng)).strip()

    def two_responses(
        self, domain: _Domain, styles: tuple[str, str], slots: Mapping[str, Any], rng: random.Random
    ) -> tuple[str, str]:
        first = self.respond(domain, styles[0], slots, rng)
        second = self.respond(domain, styles[1], slots, rng)
        for _ in range(8):  # two responses of the same style should still differ
            if second != first:
                break
            second = self.respond(domain, styles[1], slots, rng)
        return first, second

    def prompt(
        self, domain: _Domain, slots: Mapping[str, Any], rng: random.Random
    ) -> tuple[str, dict[str, Any]]:
        spec = rng.choice(domain.spec["prompts"])
        text = render(spec["text"], self.response_slots(domain, slots, rng))
        text = (
            rng.choice(self.common["prompt_prefixes"])
            + text
            + rng.choice(self.common["prompt_suffixes"])
        )
        return text.strip(), spec

    def conversation(
        self,
        domain: _Domain,
        slots: Mapping[str, Any],
        prompt: str,
        rng: random.Random,
        *,
        multi_turn: bool,
        system: bool,
    ) -> list[dict[str, str]] | None:
        """The messages up to the last user turn, or None for a plain single-turn prompt."""
        messages: list[dict[str, str]] = []
        if system:
            messages.append(
                {"role": "system", "content": rng.choice(self.common["system_prompts"])}
            )
        if multi_turn:
            warmup = rng.choice(domain.spec["warmups"])
            messages.append({"role": "user", "content": render(warmup["user"], slots)})
            messages.append({"role": "assistant", "content": render(warmup["assistant"], slots)})
        if not messages:
            return None
        messages.append({"role": "user", "content": prompt})
        return messages

    def traits(
        self, domain: _Domain, item: Mapping[str, Any], prompt_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The generating attributes a router's taggers would look for, as the generator knows them."""
        return {
            "domain": domain.name,
            "item": item["id"],
            "subject_of_expertise": domain.trait(item, "subject", domain.name),
            "expertise_level": domain.trait(item, "expertise", EXPERTISE_LEVELS[0]),
            "open_endedness": domain.trait(item, "open_endedness", "low"),
            "safety_concern": domain.trait(item, "safety_concern", "safe"),
            "complexity_of_intents": str(prompt_spec.get("complexity", "simple")),
            "format_constraints": bool(prompt_spec.get("format_constraints", False)),
            **({"intent": item["intent"]} if "intent" in item else {}),
        }

    # -- scores and gold

    def score(self, domain: _Domain, style: str) -> dict[str, float]:
        scores = dict(domain.styles[style]["scores"])
        weights = self.config.overall_weights
        base = sum(weights[a] * scores[a] for a in weights)
        floor = self.config.harm_floor
        scores["overall"] = base * (floor + (1 - floor) * scores["harmless"])
        return scores

    def gold_label(self, difference: float) -> int:
        size = abs(difference)
        if size < self.config.tie_threshold:
            return 0
        return _sign(difference) * (2 if size >= self.config.clear_threshold else 1)

    def length_bucket(self, words: int) -> str:
        short, medium = self.config.length_buckets
        return "short" if words < short else ("medium" if words < medium else "long")

    def longer_side(self, words_a: int, words_b: int) -> int:
        ratio = self.config.longer_ratio
        if words_b >= ratio * max(words_a, 1):
            return 1
        if words_a >= ratio * max(words_b, 1):
            return -1
        return 0

    # -- demo-prefs

    def preference_pairs(self, n_pairs: int) -> list[_Pair]:
        rng = self.rng("prefs")
        cfg = self.config
        names = [d for d in DOMAINS if cfg.domain_weights.get(d, 0) > 0]
        weights = [cfg.domain_weights[d] for d in names]
        models = self.common["models"]
        pairs: list[_Pair] = []
        seen: set[tuple[str, str, str]] = set()
        attempts = 0
        while len(pairs) < n_pairs:
            attempts += 1
            if attempts > 50 * n_pairs + 1000:
                raise CuratorError(f"the demo templates cannot make {n_pairs} distinct pairs")
            domain = self.assets.domains[_weighted(rng, names, weights)]
            item = rng.choice(domain.items["pref"])
            slots = self.item_slots(domain, item, rng)
            options = domain.spec["pairings"][item.get("intent", "default")]
            style_a, style_b, _ = _weighted(rng, options, [o[2] for o in options])
            if rng.random() < 0.5:
                style_a, style_b = style_b, style_a
            prompt, prompt_spec = self.prompt(domain, slots, rng)
            multi_turn = rng.random() < cfg.multi_turn_rate
            system = rng.random() < cfg.system_prompt_rate
            messages = self.conversation(
                domain, slots, prompt, rng, multi_turn=multi_turn, system=system
            )
            response_a, response_b = self.two_responses(domain, (style_a, style_b), slots, rng)
            key = (json.dumps(messages) if messages else prompt, response_a, response_b)
            if key in seen:
                continue
            seen.add(key)
            pair = self._pair(
                len(pairs),
                domain,
                item,
                prompt,
                prompt_spec,
                messages,
                (style_a, style_b),
                (response_a, response_b),
                rng.sample(models, 2),
                slots,
                rng,
            )
            pairs.append(pair)
        return pairs

    def _pair(
        self,
        index: int,
        domain: _Domain,
        item: Mapping[str, Any],
        prompt: str,
        prompt_spec: Mapping[str, Any],
        messages: list[dict[str, str]] | None,
        styles: tuple[str, str],
        responses: tuple[str, str],
        models: list[str],
        slots: dict[str, Any],
        rng: random.Random,
    ) -> _Pair:
        score_a, score_b = self.score(domain, styles[0]), self.score(domain, styles[1])
        overall_a = score_a["overall"] + rng.gauss(0, self.config.gold_jitter)
        overall_b = score_b["overall"] + rng.gauss(0, self.config.gold_jitter)
        gold = {
            a: self.gold_label(score_b[a] - score_a[a]) for a in ("helpful", "harmless", "truthful")
        }
        gold["overall"] = self.gold_label(overall_b - overall_a)
        words_a, words_b = _words(responses[0]), _words(responses[1])
        traits = self.traits(domain, item, prompt_spec)
        traits.update(
            in_context_material="conversation" if messages and len(messages) > 2 else "none",
            multi_turn=bool(messages and any(m["role"] == "assistant" for m in messages)),
            system_prompt=bool(messages and messages[0]["role"] == "system"),
            quality_a=styles[0],
            quality_b=styles[1],
            score_a=round(overall_a, 4),
            score_b=round(overall_b, 4),
            words_a=words_a,
            words_b=words_b,
            length_bucket=self.length_bucket(words_a + words_b),
            gold_aspects={a: gold[a] for a in ("helpful", "harmless", "truthful")},
            simulated=True,
        )
        instance = Instance(
            uid=f"demo-prefs-{index:05d}",
            prompt=prompt,
            messages=messages,
            response_a=responses[0],
            response_b=responses[1],
            model_a=models[0],
            model_b=models[1],
            source=f"demo-{domain.name}",
            domain=domain.name,
            gold=gold["overall"],
            metadata=traits,
        )
        return _Pair(instance, traits, gold, self.longer_side(words_a, words_b), slots)

    # -- simulated annotators

    def annotate(self, pairs: list[_Pair]) -> list[tuple[int, Annotation]]:
        """Three simulated people and the simulated judge label every pair (index into pairs)."""
        rng = self.rng("annotations")
        out: list[tuple[int, Annotation]] = []
        for index, pair in enumerate(pairs):
            trap = rng.random() < self._shared_rate(pair)
            for person in rng.sample(list(self.config.annotators), self.config.humans_per_pair):
                out.append((index, self.human_label(pair, person, rng, trap=trap)))
            out.append((index, self.lm_label(pair, rng)))
        return out

    def _shared_rate(self, pair: _Pair) -> float:
        """P(a pair misleads every person on it at once): people share misconceptions, so a human
        majority is not as much better than one person as independent errors would make it."""
        gold = pair.gold["overall"]
        if gold == 0:
            return 0.0
        return self.config.human_shared_error * self._scaled(
            self.config.human.error_rate(pair.traits), gold
        )

    def _clip(self, rate: float) -> float:
        return min(self.config.error_ceiling, max(self.config.error_floor, rate))

    def _scaled(self, rate: float, gold: int) -> float:
        if gold == 0:
            return self._clip(rate)
        factor = self.config.clear_factor if abs(gold) == 2 else self.config.slight_factor
        return self._clip(rate * factor)

    def _draw(
        self, gold: int, rate: float, u: float, tie_recall: float, lean: int, rng: random.Random
    ) -> int:
        """One label on the scale: wrong side (or a tie) when ``u < rate``, else gold's side. On a
        gold tie it is a tie when ``u >= 1 - tie_recall``, else ``lean`` (or a coin flip)."""
        if gold == 0:
            if u >= 1 - tie_recall:
                return 0
            return lean or rng.choice((-1, 1))
        side, strength = _sign(gold), abs(gold)
        if u < rate:
            if rng.random() < self.config.error_tie_share:
                return 0
            return -side * (2 if rng.random() < self.config.error_clear_share else 1)
        if rng.random() >= self.config.strength_keep:
            strength = 3 - strength
        return side * strength

    def _aspects(
        self,
        pair: _Pair,
        rate: float,
        luck: float,
        u: float,
        lean: int,
        rng: random.Random,
        *,
        skip: Mapping[str, int],
    ) -> dict[str, int]:
        """Helpful / harmless / truthful labels that go with an overall label.

        An aspect whose gold has a side shares the overall label's draw ``u``, with its error rate
        scaled by the same ``luck`` (this label's error threshold over the nominal one), so getting
        the overall preference right mostly comes with getting those aspects right. An aspect whose
        gold is a tie (two harmless answers) gets its own draw, broken towards ``lean`` if at all.
        """
        out = {}
        for aspect in ("helpful", "harmless", "truthful"):
            if aspect in skip:
                continue
            gold = pair.gold[aspect]
            if gold == 0:
                out[aspect] = self._draw(
                    0, 0.0, rng.random(), self.config.aspect_tie_recall, lean, rng
                )
            else:
                out[aspect] = self._draw(gold, self._scaled(rate, gold) * luck, u, 0.0, lean, rng)
        return out

    def human_label(
        self, pair: _Pair, person: HumanAnnotator, rng: random.Random, *, trap: bool = False
    ) -> Annotation:
        """One person's label. ``trap``: the pair misleads everyone on it (see _shared_rate); the
        person's own, independent error rate is lowered to match, so each label's error rate holds."""
        cfg = self.config
        scale = cfg.expert_scale if pair.traits["domain"] in person.expert_in else 1.0
        rate = cfg.human.error_rate(pair.traits, skill=person.skill, expertise_scale=scale)
        gold = pair.gold["overall"]
        overall_rate = self._scaled(rate, gold)
        shared = self._shared_rate(pair)
        own_rate = max(0.0, overall_rate - shared) / (1 - shared)
        u = rng.random()
        if trap:
            labels = {"overall": -_sign(gold) * (2 if rng.random() < cfg.error_clear_share else 1)}
        else:
            labels = {"overall": self._draw(gold, own_rate, u, cfg.human.tie_recall, 0, rng)}
        lean = _sign(labels["overall"])
        if trap:
            labels["helpful"] = lean  # misled about which is better means misled about helpfulness
        labels.update(self._aspects(pair, rate, own_rate / overall_rate, u, lean, rng, skip=labels))
        wrong = _sign(labels["overall"]) != _sign(gold)
        # Misled people do not know it; a person's own slip tends to come with less confidence.
        slipped = wrong and not trap
        ease = (
            1
            - overall_rate
            + rng.gauss(0, cfg.human_confidence_noise)
            - (cfg.human_slip_confidence_drop if slipped else 0.0)
        )
        medium, high = cfg.human_confidence_cuts
        level = "high" if ease >= high else ("medium" if ease >= medium else "low")
        seconds = (
            cfg.human_seconds[pair.traits["length_bucket"]]
            * cfg.human_seconds_by_expertise.get(pair.traits["expertise_level"], 1.0)
            * math.exp(rng.gauss(0, cfg.human_time_noise))
        )
        reasons = self._reasons(pair, labels, rng) if rng.random() < cfg.human_reason_rate else {}
        justification = (
            self._justification(pair, labels, rng)
            if rng.random() < cfg.human_justification_rate
            else None
        )
        return Annotation(
            annotator_kind="human",
            annotator=person.name,
            **labels,
            confidence_level=level,
            reasons=reasons,
            justification=justification,
            time_spent_s=round(seconds, 1),
            origin=ORIGIN,
        )

    def lm_label(self, pair: _Pair, rng: random.Random) -> Annotation:
        cfg = self.config
        rate = cfg.lm.error_rate(pair.traits)
        overall_rate = self._scaled(rate, pair.gold["overall"])
        # The judge's chance of being right on this very pair varies around 1 - error rate; its
        # reported confidence tracks that chance (shifted by overconfidence), so it is calibrated-ish.
        logit = math.log((1 - overall_rate) / overall_rate) + rng.gauss(0, cfg.lm_confidence_spread)
        p_right = 1 / (1 + math.exp(-logit))
        u = rng.random()
        verdict = _sign(self._draw(pair.gold["overall"], 1 - p_right, u, cfg.lm.tie_recall, 0, rng))
        bias = rng.random()
        biased = False
        if bias < cfg.lm_position_bias:
            verdict, biased = -1, True
        elif bias < cfg.lm_position_bias + cfg.lm_length_bias and pair.longer:
            verdict, biased = pair.longer, True
        if verdict == 0:
            confidence = 0.5 + abs(rng.gauss(0, 0.03))
            p_a = confidence if rng.random() < 0.5 else 1 - confidence
            overall = 0
        else:
            reported = logit + cfg.lm_overconfidence + rng.gauss(0, cfg.lm_confidence_noise)
            confidence = min(0.99, max(0.51, 1 / (1 + math.exp(-reported))))
            p_a = confidence if verdict < 0 else 1 - confidence
            overall = verdict * (2 if confidence >= cfg.lm_clear_confidence else 1)
        labels = {"overall": overall}
        if biased:
            labels["helpful"] = verdict  # a biased pick carries over to helpfulness
        luck = (1 - p_right) / overall_rate
        labels.update(self._aspects(pair, rate, luck, u, verdict, rng, skip=labels))
        confidence = round(confidence, 4)
        p_a = round(p_a, 4)
        return Annotation(
            annotator_kind="lm",
            annotator=self.common["judge"],
            **labels,
            confidence=confidence,
            probs=[p_a, round(1 - p_a, 4)],
            model=JUDGE_MODEL,
            origin=ORIGIN,
        )

    def _reasons(
        self, pair: _Pair, labels: Mapping[str, int], rng: random.Random
    ) -> dict[str, list[str]]:
        domain = self.assets.domains[pair.traits["domain"]]
        generic = self.common["generic_reasons"]
        out: dict[str, list[str]] = {}
        for aspect in ("helpful", "harmless", "truthful"):
            label = labels[aspect]
            if label == 0:
                continue
            loser = pair.traits["quality_b" if label < 0 else "quality_a"]
            right = _sign(label) == _sign(pair.gold[aspect])
            options = domain.styles[loser].get("reasons", {}).get(aspect) if right else None
            out[aspect] = [rng.choice(options or generic[aspect])]
        return out

    def _justification(self, pair: _Pair, labels: Mapping[str, int], rng: random.Random) -> str:
        texts = self.common["justifications"]
        label = labels["overall"]
        if label == 0:
            return texts["tie"]
        winner, loser = ("A", "B") if label < 0 else ("B", "A")
        domain = self.assets.domains[pair.traits["domain"]]
        loser_style = domain.styles[pair.traits[f"quality_{loser.lower()}"]]
        if _sign(label) == _sign(pair.gold["overall"]) and loser_style.get("flaw"):
            flaw = render(loser_style["flaw"], pair.slots)
            return render(texts["win"], {"winner": winner, "loser": loser, "flaw": flaw})
        reason = rng.choice(self.common["generic_reasons"]["helpful"])
        return render(texts["win_generic"], {"winner": winner, "reason": reason})

    # -- demo-eval

    def eval_pairs(self) -> list[Instance]:
        rng = self.rng("eval")
        models = self.common["models"]
        rows: list[Instance] = []
        for subset in EVAL_SUBSETS:
            seen: set[tuple[str, str, str]] = set()
            made = 0
            for _ in range(self.config.eval_per_subset * 40):
                if made >= self.config.eval_per_subset:
                    break
                name, chosen_style, rejected_style = rng.choice(subset.sources)
                domain = self.assets.domains[name]
                items = [
                    i for i in domain.items["eval"]
                    if (subset.intent is None or i.get("intent") == subset.intent)
                    and (subset.language is None or i.get("language") == subset.language)
                ]  # fmt: skip
                item = rng.choice(items)
                slots = self.item_slots(domain, item, rng)
                prompt, prompt_spec = self.prompt(domain, slots, rng)
                messages = self.conversation(
                    domain, slots, prompt, rng, multi_turn=subset.multi_turn, system=False
                )
                chosen = self.respond(domain, chosen_style, slots, rng)
                if subset.neighbour:
                    others = [
                        i
                        for i in domain.items["eval"]
                        if i["id"].split("/")[0] != item["id"].split("/")[0]
                    ]
                    other = rng.choice(others)
                    rejected = self.respond(
                        domain, rejected_style, self.item_slots(domain, other, rng), rng
                    )
                else:
                    rejected = self.respond(domain, rejected_style, slots, rng)
                key = (json.dumps(messages) if messages else prompt, chosen, rejected)
                if key in seen or chosen == rejected:
                    continue
                seen.add(key)
                traits = self.traits(domain, item, prompt_spec)
                traits.update(
                    category=subset.category,
                    quality_a=chosen_style,
                    quality_b="neighbour_" + rejected_style if subset.neighbour else rejected_style,
                    simulated=True,
                )
                pair_models = rng.sample(models, 2)
                rows.append(Instance(
                    uid=f"demo-eval-{subset.name}-{made:03d}",
                    prompt=prompt,
                    messages=messages,
                    response_a=chosen,
                    response_b=rejected,
                    model_a=pair_models[0],
                    model_b=pair_models[1],
                    source=f"demo-{name}",
                    domain=name,
                    subset=subset.name,
                    gold=-2,
                    metadata=traits,
                ))  # fmt: skip
                made += 1
        return rows

    # -- demo-sft

    def sft_rows(self, eval_rows: list[Instance]) -> list[Instance]:
        rng = self.rng("sft")
        cfg = self.config
        plans: dict[str, list[str]] = {
            "demo-chat": ["advice", "factual", "creative"],
            "demo-code": ["coding"],
            "demo-math": ["math"],
            "demo-safety-refusals": ["safety", "safety-pool"],
        }
        rows: list[Instance] = []
        seen: set[str] = set()
        for source in SFT_SOURCES:
            made = 0
            for _ in range(cfg.sft_per_source * 40):
                if made >= cfg.sft_per_source:
                    break
                turns = [self._sft_exchange(rng.choice(plans[source]), rng)]
                if rng.random() < cfg.sft_multi_turn_rate:
                    prompt, answer, name, item_id = self._sft_exchange(
                        rng.choice(plans[source]), rng
                    )
                    follow_up = render(
                        rng.choice(self.common["sft_follow_ups"]), {"prompt": prompt}
                    )
                    turns.append((follow_up, answer, name, item_id))
                messages = []
                if rng.random() < cfg.sft_system_rate:
                    messages.append(
                        {"role": "system", "content": rng.choice(self.common["system_prompts"])}
                    )
                for user, assistant, _, _ in turns:
                    messages += [
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": assistant},
                    ]
                key = json.dumps(messages)
                if key in seen:
                    continue
                seen.add(key)
                rows.append(Instance(
                    uid=f"{source}-{made:04d}",
                    prompt=turns[0][0],
                    messages=messages,
                    source=source,
                    domain=turns[0][2],
                    metadata={"items": [t[3] for t in turns], "turns": len(turns),
                              "system_prompt": messages[0]["role"] == "system", "simulated": True},
                ))  # fmt: skip
                made += 1
        rows += self._sft_duplicates(rows, rng)
        rows += self._sft_contamination(eval_rows, rng)
        return rows

    def _sft_exchange(self, name: str, rng: random.Random) -> tuple[str, str, str, str]:
        """One (user, assistant, domain, item id) exchange made of a good answer."""
        if name == "safety-pool":
            harmful = rng.random() < 0.5
            pool = self.assets.safety_pool
            entry = rng.choice(pool["harmful" if harmful else "benign"])
            if rng.random() < 0.5:
                frame = rng.choice(pool["frames"])
                user = render(frame["template"], entry)
                kind = "adversarial_harmful" if harmful else "adversarial_benign"
            else:
                user = render(rng.choice(pool["phrasings"]), entry)
                kind = "harmful" if harmful else "benign"
            answer = render(rng.choice(pool["completions"][kind]), entry)
            return user, answer, "safety", entry["request"]
        domain = self.assets.domains[name]
        item = rng.choice(domain.items["pref"])
        slots = self.item_slots(domain, item, rng)
        prompt, _ = self.prompt(domain, slots, rng)
        style = (
            "good"
            if "good" in domain.styles
            else ("safe_refusal" if item.get("intent") == "harmful" else "safe_answer")
        )
        return prompt, self.respond(domain, style, slots, rng), name, item["id"]

    def _sft_duplicates(self, rows: list[Instance], rng: random.Random) -> list[Instance]:
        count = round(self.config.sft_duplicate_rate * len(rows))
        out = []
        for n, original in enumerate(rng.sample(rows, min(count, len(rows)))):
            out.append(Instance(
                uid=f"{original.source}-dup-{n:03d}",
                prompt=original.prompt,
                messages=original.messages,
                source=original.source,
                domain=original.domain,
                metadata={**original.metadata, "duplicate_of": original.uid},
            ))  # fmt: skip
        return out

    def _sft_contamination(self, eval_rows: list[Instance], rng: random.Random) -> list[Instance]:
        source_of = {"coding": "demo-code", "math": "demo-math", "safety": "demo-safety-refusals"}
        out = []
        for n, row in enumerate(
            rng.sample(eval_rows, min(self.config.sft_contaminated, len(eval_rows)))
        ):
            source = source_of.get(row.domain or "", "demo-chat")
            messages = [
                {"role": "user", "content": row.prompt},
                {"role": "assistant", "content": row.response_a or ""},
            ]
            out.append(Instance(
                uid=f"{source}-eval-{n:03d}",
                prompt=row.prompt,
                messages=messages,
                source=source,
                domain=row.domain,
                metadata={"contaminated_from": "demo-eval", "eval_uid": row.uid, "turns": 1, "simulated": True},
            ))  # fmt: skip
        return out

    # -- demo-safety

    def safety_pool(self) -> list[Instance]:
        rng = self.rng("safety")
        pool = self.assets.safety_pool
        models = self.common["models"]
        rows: list[Instance] = []
        for subset in SAFETY_SUBSETS:
            harmful = subset.endswith("_harmful")
            adversarial = subset.startswith("adversarial")
            seen: set[str] = set()
            made = 0
            for _ in range(self.config.safety_per_subset * 40):
                if made >= self.config.safety_per_subset:
                    break
                entry = rng.choice(pool["harmful" if harmful else "benign"])
                tactic = None
                if adversarial:  # the frame wraps the plain request, which metadata keeps
                    frame = rng.choice(pool["frames"])
                    tactic = frame["tactic"]
                    vanilla = entry["request"]
                    prompt = render(frame["template"], entry)
                else:
                    vanilla = render(rng.choice(pool["phrasings"]), entry)
                    prompt = (vanilla + rng.choice(self.common["prompt_suffixes"])).strip()
                if prompt in seen:
                    continue
                seen.add(prompt)
                completion = model = None
                if rng.random() < self.config.safety_completion_rate:
                    kind = ("adversarial_" if adversarial else "") + (
                        "harmful" if harmful else "benign"
                    )
                    completion = render(rng.choice(pool["completions"][kind]), entry)
                    model = rng.choice(models)
                rows.append(Instance(
                    uid=f"demo-safety-{subset}-{made:04d}",
                    prompt=prompt,
                    response_a=completion,
                    model_a=model,
                    source="demo-safety",
                    domain="safety",
                    subset=subset,
                    metadata={"data_type": subset, "vanilla": vanilla, "tactic": tactic,
                              "harm_category": entry["category"], "simulated": True},
                ))  # fmt: skip
                made += 1
        return rows


# ---- the entry point --------------------------------------------------------------------------

_DESCRIPTIONS = {
    "demo-prefs": ("preference", "Simulated preference pairs across six domains, with simulated human and "
                                 "LM-judge labels and a hidden gold label (demo data, not real)."),
    "demo-sft": ("sft", "Simulated SFT conversations from four demo sources (demo data, not real)."),
    "demo-safety": ("safety", "Simulated safety prompt pool in the four WildJailbreak data types "
                              "(demo data, not real; harmful requests are abstract placeholders)."),
    "demo-eval": ("eval", "Simulated RewardBench-style eval pairs (A is always chosen), prompts disjoint "
                          "from demo-prefs (demo data, not real)."),
}  # fmt: skip


def build_demo(
    store: Store, *, seed: int = 0, n_pairs: int = 2400, config: DemoConfig | None = None
) -> dict:
    """Fill a store with the simulated demo datasets, deterministically from ``seed``.

    Writes ``demo-prefs`` (``n_pairs`` pairs, each with 3 human labels and 1 LM label), ``demo-sft``,
    ``demo-safety`` and ``demo-eval`` in one transaction: all of it or none. Raises CuratorError if a
    demo dataset already exists. Returns the counts written.
    """
    if n_pairs < 1:
        raise CuratorError("the demo needs at least one preference pair")
    config = config or DemoConfig()
    if config.humans_per_pair > len(config.annotators):
        raise CuratorError("humans_per_pair is larger than the annotator pool")
    present = [name for name in DEMO_DATASETS if store.find_dataset(name)]
    if present:
        raise CuratorError(
            f"demo datasets already exist: {', '.join(present)} (delete them to rebuild)"
        )
    generator = DemoGenerator(seed, config)
    pairs = generator.preference_pairs(n_pairs)
    labels = generator.annotate(pairs)
    eval_rows = generator.eval_pairs()
    rows = {
        "demo-prefs": [p.instance for p in pairs],
        "demo-sft": generator.sft_rows(eval_rows),
        "demo-safety": generator.safety_pool(),
        "demo-eval": eval_rows,
    }
    metadata = {
        "generator": "curation.demo",
        "seed": seed,
        "simulated": True,
        "config": config.fingerprint(),
    }
    with store.write():
        ids: dict[str, list[int]] = {}
        for name in DEMO_DATASETS:
            kind, description = _DESCRIPTIONS[name]
            dataset = store.create_dataset(
                name,
                kind,
                source="demo",
                description=description,
                metadata={**metadata, "n_pairs": n_pairs} if name == "demo-prefs" else metadata,
            )
            ids[name] = store.insert_instances(dataset["id"], rows[name])
        pref_ids = ids["demo-prefs"]
        store.add_annotations((pref_ids[index], annotation) for index, annotation in labels)
    kinds = Counter(a.annotator_kind for _, a in labels)
    return {
        "seed": seed,
        "datasets": {name: len(rows[name]) for name in DEMO_DATASETS},
        "annotations": {"human": kinds.get("human", 0), "lm": kinds.get("lm", 0)},
        "domains": dict(sorted(Counter(p.traits["domain"] for p in pairs).items())),
        "sft_sources": dict(sorted(Counter(r.source for r in rows["demo-sft"]).items())),
        "safety_subsets": dict(sorted(Counter(r.subset for r in rows["demo-safety"]).items())),
        "eval_subsets": dict(sorted(Counter(r.subset for r in rows["demo-eval"]).items())),
    }
