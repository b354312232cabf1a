"""LM judges: pairwise preference labels with a probability, written to the store.

A :class:`Judge` is a named configuration (backend, model, prompt template, aspects). It renders
each pair into its template, reads the probability of "A" against "B" as the model's next token,
in both orders (A/B, then swapped, to cancel position bias), and stores one LM annotation per
instance: a verdict on the -2..2 scale, ``probs`` [pA, pB] and ``confidence`` = max(pA, pB).
Instances that already carry this judge's label are skipped, so a stopped run resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assets import asset_path
from curation.errors import CuratorError
from curation.labels import ASPECTS
from curation.records import Annotation, Instance
from curation.store import Store
from routing.backends import BACKENDS, CANDIDATES, Backend, parse_answer

# A combined probability at or above this makes the verdict "clearly" (-2 or 2), below it
# "slightly" (-1 or 1); exactly 0.5 is a tie. The threshold is a convention, not calibrated:
# trust-or-escalate works from ``confidence``, not from the strength.
CLEARLY_AT = 0.75
TEMPLATE_DIR = "judges"
METHOD_LOGPROBS = "logprobs"
METHOD_PARSED = "parsed"
NO_PROBABILITY = "no probability: parsed answer"
_PLACEHOLDER = re.compile(r"\{(prompt|response_a|response_b)\}")
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


@dataclass
class Judge:
    """A judge's configuration; the same dataclass feeds the CLI and the app's form."""

    name: str = field(default="", metadata={"help": "Label name (default: model and template)."})
    backend: str = field(
        default="transformers", metadata={"help": f"One of {', '.join(BACKENDS)}."}
    )
    model: str | None = field(
        default=None,
        metadata={"help": "HF id or local folder; default: the embedded SmolLM2-135M-Instruct."},
    )
    template: str = field(
        default="pairwise",
        metadata={"help": "Shipped template (pairwise, multipref) or a .yaml/.md/.txt file."},
    )
    aspects: tuple[str, ...] = field(
        default=("overall",),
        metadata={"help": "MultiPref aspects to judge (repeatable).", "cli": "--aspect"},
    )
    both_orders: bool = field(
        default=True,
        metadata={
            "help": "Also judge with A and B swapped, and average (one order: half the cost).",
            "cli": "--both-orders/--one-order",
        },
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per forward pass or request."})
    personas: int = field(
        default=0,
        metadata={"help": "Simulated Annotators: judge as this many personas, each shown pairs one "
                          "person labelled, and average them (0: off)."},
    )  # fmt: skip
    persona_shots: int = field(
        default=3, metadata={"help": "Labelled example pairs shown to each persona."}
    )
    url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server URL."})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the server's API key."},
    )
    max_chars: int = field(
        default=4000, metadata={"help": "Longer prompts and responses are cut to this length."}
    )

    def __post_init__(self) -> None:
        self.aspects = tuple(self.aspects)
        if self.backend not in BACKENDS:
            raise CuratorError(f"unknown judge backend {self.backend!r}; choose {BACKENDS}")
        unknown = [a for a in self.aspects if a not in ASPECTS]
        if unknown or not self.aspects:
            raise CuratorError(f"aspects must be among {', '.join(ASPECTS)}; got {unknown}")
        if self.personas < 0 or self.persona_shots < 1:
            raise CuratorError("personas must be 0 or more, and each needs at least one shot")
        if self.batch_size < 1:
            raise CuratorError("batch size must be at least 1")
        if self.url:
            from routing.backends import check_server_url

            self.url = check_server_url(self.url)
        if not self.name:
            default = "openai" if self.backend == "openai" else "smollm2-135m-instruct"
            model = (self.model or default).rstrip("/").split("/")[-1]
            self.name = f"{model}-{Path(self.template).stem}"
            if self.personas:
                self.name += f"-sa{self.personas}x{self.persona_shots}"

    def config(self) -> dict[str, Any]:
        """What is recorded in the judges table (never an API key, only its variable's name)."""
        return asdict(self) | {"aspects": list(self.aspects)}


# ---- templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A judge prompt per aspect, with placeholders {prompt}, {response_a}, {response_b}."""

    name: str
    aspects: dict[str, str]

    def text(self, aspect: str) -> str:
        if aspect in self.aspects:
            return self.aspects[aspect]
        raise CuratorError(
            f"template {self.name!r} has no prompt for aspect {aspect!r} "
            f"(it has {', '.join(self.aspects)})"
        )

    def hash(self, aspects: Sequence[str] = ("overall",)) -> str:
        """First 16 hex digits of the SHA-256 of the prompt text (of each aspect used, in order)."""
        if len(aspects) == 1:
            payload = self.text(aspects[0])
        else:
            payload = "\n\0".join(f"{a}\n{self.text(a)}" for a in aspects)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def shipped_templates() -> list[str]:
    return sorted(p.stem for p in asset_path(TEMPLATE_DIR).glob("*.yaml"))


def load_template(name_or_path: str) -> Template:
    """A shipped template by name, or a file: YAML with ``aspects: {aspect: text}``, or a plain
    text/Markdown file used as the overall prompt."""
    shipped = asset_path(TEMPLATE_DIR, f"{name_or_path}.yaml")
    path = shipped if shipped.is_file() else Path(name_or_path).expanduser()
    if not path.is_file():
        raise CuratorError(
            f"no judge template {name_or_path!r}: use one of {', '.join(shipped_templates())} "
            "or a path to a .yaml, .md or .txt file"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise CuratorError(f"judge template {path} is not valid YAML: {exc}") from exc
        aspects = data.get("aspects") if isinstance(data, dict) else None
        if not isinstance(aspects, dict) or not all(isinstance(v, str) for v in aspects.values()):
            raise CuratorError(f"judge template {path} needs `aspects: {{aspect: prompt text}}`")
        template = Template(str(data.get("name") or path.stem), dict(aspects))
    else:
        template = Template(path.stem, {"overall": text})
    for aspect, body in template.aspects.items():
        missing = {"response_a", "response_b"} - set(_PLACEHOLDER.findall(body))
        if missing:
            raise CuratorError(
                f"judge template {template.name!r} ({aspect}) lacks "
                + ", ".join("{" + m + "}" for m in sorted(missing))
            )
    return template


def _clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rstrip() + " [...]"


def render_conversation(instance: Instance, max_chars: int = 4000) -> str:
    """The prompt side of a pair as the judge reads it: the prompt itself, or for a multi-turn
    conversation a transcript ("User: ...", "Assistant: ...") ending with the last user turn."""
    messages = instance.messages or []
    if len(messages) <= 1:
        text = messages[0]["content"] if messages else instance.prompt
        return _clip(text or "", max_chars)
    turns = [f"{ROLE_NAMES.get(m['role'], m['role'])}: {m['content']}" for m in messages]
    # Keep the end of a long conversation: the last user turn is what the responses answer.
    transcript = "\n\n".join(turns)
    if len(transcript) > max_chars:
        transcript = "[...] " + transcript[-max_chars:].lstrip()
    return transcript


def render_prompt(
    template_text: str, instance: Instance, *, swapped: bool = False, max_chars: int = 4000
) -> str:
    """Fill a template with one pair, in the original order or with the responses swapped.

    One pass over the template's placeholders, so braces or placeholder names inside the data
    are left as they are.
    """
    first, second = instance.response_a or "", instance.response_b or ""
    if swapped:
        first, second = second, first
    values = {
        "prompt": render_conversation(instance, max_chars),
        "response_a": _clip(first, max_chars),
        "response_b": _clip(second, max_chars),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template_text)


# ---- probabilities --------------------------------------------------------------------------


def normalise(logprobs: dict[str, float], candidates: Sequence[str] = CANDIDATES) -> float | None:
    """P(first candidate) among the two candidates only; None when neither was seen.

    A candidate missing from the dict (outside an API's top-k) counts as probability 0.
    """
    first, second = (logprobs.get(c, -math.inf) for c in candidates)
    if math.isinf(first) and math.isinf(second):
        return None
    top = max(first, second)
    a, b = math.exp(first - top), math.exp(second - top)
    return a / (a + b)


def combine_orders(p_a_original: float, p_a_swapped: float | None = None) -> float:
    """P(the original response A is better), from the probability of answering "A" in each order.

    In the swapped order the original A is shown as B, so the vote for it there is 1 - P("A").
    The two are averaged, which cancels a constant position bias.
    """
    if p_a_swapped is None:
        return p_a_original
    return (p_a_original + (1.0 - p_a_swapped)) / 2.0


def verdict_from_probability(p_a: float) -> int:
    """The -2..2 label of a probability that A is better (see ``CLEARLY_AT``)."""
    if p_a == 0.5:
        return 0
    strength = 2 if max(p_a, 1.0 - p_a) >= CLEARLY_AT else 1
    return -strength if p_a > 0.5 else strength


def verdict_from_answers(answers: Sequence[str | None]) -> int | None:
    """The label of parsed answers (original-order letters): all agree -> -1 or 1 (no strength is
    measured without a probability), disagreement -> tie, nothing parsed -> None."""
    seen = [a for a in answers if a is not None]
    if not seen:
        return None
    if all(a == "A" for a in seen):
        return -1
    if all(a == "B" for a in seen):
        return 1
    return 0


# ---- Simulated Annotators ---------------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """One simulated annotator: whose labels it imitates, and the labelled pairs it is shown as
    (instance id, pair, the letter that person chose)."""

    source: str
    shots: tuple[tuple[int, Instance, str], ...]


def simulated_personas(
    store: Store, dataset: str, count: int, shots: int, *, seed: int = 0
) -> list[Persona]:
    """Trust or Escalate's Simulated Annotators (Jung et al., 2024): a judge answers as ``count``
    personas, each prompted with ``shots`` pairs one person labelled, so the spread of their
    answers reflects how people disagree. People with the most labels come first; when there are
    fewer people than personas the rest draw their shots from everyone's labels."""
    ds = store.dataset(dataset)
    rows = store.conn.execute(
        "SELECT a.instance_id, a.annotator, a.overall FROM annotations a "
        "JOIN instances i ON i.id = a.instance_id WHERE i.dataset_id = ? "
        "AND a.annotator_kind = 'human' AND a.status = 'submitted' AND a.overall IS NOT NULL "
        "AND a.overall != 0 ORDER BY a.id",
        (ds["id"],),
    ).fetchall()
    by_person: dict[str, dict[int, str]] = {}
    for instance_id, person, overall in rows:
        by_person.setdefault(person, {})[instance_id] = "A" if overall < 0 else "B"
    pool = sorted({(i, letter) for labels in by_person.values() for i, letter in labels.items()})
    if len(pool) < shots:
        raise CuratorError(
            f"Simulated Annotators need at least {shots} pairs of {dataset!r} with a human "
            f"preference to show as examples; it has {len(pool)} (lower persona_shots, or "
            "annotate some pairs first)"
        )
    rng = random.Random(seed)
    drawn: list[tuple[str, list[tuple[int, str]]]] = []
    for person in sorted(by_person, key=lambda name: (-len(by_person[name]), name)):
        items = sorted(by_person[person].items())
        if len(drawn) < count and len(items) >= shots:
            drawn.append((person, rng.sample(items, shots)))
    while len(drawn) < count:
        drawn.append(("everyone", rng.sample(pool, shots)))
    wanted = {i for _, items in drawn for i, _ in items}
    instances = {i: inst for i, inst in store.iter_instances(dataset) if i in wanted}
    return [
        Persona(source, tuple((i, instances[i], letter) for i, letter in items))
        for source, items in drawn
    ]


def render_persona_prompt(
    template_text: str,
    persona: Persona,
    instance: Instance,
    instance_id: int,
    *,
    swapped: bool = False,
    max_chars: int = 4000,
) -> str:
    """The persona's labelled examples, each answered, then the pair to judge. A persona is never
    shown the pair it is judging."""
    demo_chars = max(200, max_chars // (len(persona.shots) + 1))
    parts = [
        f"Example {k}:\n{render_prompt(template_text, demo, max_chars=demo_chars)}\n"
        f"Answer: {letter}"
        for k, (demo_id, demo, letter) in enumerate(persona.shots, start=1)
        if demo_id != instance_id
    ]
    parts.append(
        "Now this pair:\n"
        + render_prompt(template_text, instance, swapped=swapped, max_chars=max_chars)
    )
    return "\n\n".join(parts)


def average_personas(
    answers: Sequence[tuple[float | None, str | None]],
) -> tuple[float | None, str | None]:
    """One (P("A"), letter) from every persona's: the mean probability when all have one, else
    the letter most personas chose (ties: none)."""
    probs = [p for p, _ in answers]
    if probs and all(p is not None for p in probs):
        return sum(probs) / len(probs), None
    letters = [
        letter if p is None else ("A" if p > 0.5 else "B" if p < 0.5 else None)
        for p, letter in answers
    ]
    a, b = letters.count("A"), letters.count("B")
    return None, "A" if a > b else "B" if b > a else None


# ---- judging a dataset ----------------------------------------------------------------------


def register_judge(store: Store, judge: Judge, template: Template, model_id: str) -> dict:
    """Record the judge in the ``judges`` table; refuse a name already used for another setup,
    since its labels would then mix two judges."""
    template_hash = template.hash(judge.aspects)
    row = store.conn.execute("SELECT * FROM judges WHERE name = ?", (judge.name,)).fetchone()
    if row:
        row = dict(row)
        if (row["backend"], row["model"], row["template_hash"]) != (
            judge.backend,
            model_id,
            template_hash,
        ):
            raise CuratorError(
                f"judge {judge.name!r} already exists with backend {row['backend']}, model "
                f"{row['model']} and template hash {row['template_hash']}; give this setup "
                "another --name"
            )
        return row
    with store.write():
        store.conn.execute(
            "INSERT INTO judges(name, backend, model, template, template_hash, config) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                judge.name,
                judge.backend,
                model_id,
                template.name,
                template_hash,
                json.dumps(judge.config(), sort_keys=True),
            ),
        )
    return dict(store.conn.execute("SELECT * FROM judges WHERE name = ?", (judge.name,)).fetchone())


def judged_instance_ids(store: Store, dataset: str, judge_name: str) -> set[int]:
    """Instances of a dataset that already carry this judge's label."""
    dataset_id = store.dataset(dataset)["id"]
    rows = store.conn.execute(
        "SELECT a.instance_id FROM annotations a JOIN instances i ON i.id = a.instance_id "
        "WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' AND a.annotator = ?",
        (dataset_id, judge_name),
    )
    return {r[0] for r in rows}


def pairs_to_judge(
    store: Store, dataset: str, judge_name: str, limit: int | None = None
) -> tuple[set[int], list[tuple[int, Instance]], int]:
    """What a judge run has left: the ids it already labelled, up to ``limit`` pairs still to
    label (both responses present), and how many pairs lack a response."""
    done = judged_instance_ids(store, dataset, judge_name)
    todo: list[tuple[int, Instance]] = []
    incomplete = 0
    for instance_id, instance in store.iter_instances(dataset):
        if instance_id in done:
            continue
        if not instance.response_a or not instance.response_b:
            incomplete += 1
            continue
        todo.append((instance_id, instance))
        if limit is not None and len(todo) >= limit:
            break
    return done, todo, incomplete


def _score(backend: Backend, prompts: list[str]) -> tuple[list[float | None], list[str | None]]:
    """P("A") per prompt where the backend gives log-probs, else the parsed letter."""
    probs: list[float | None] = [None] * len(prompts)
    if backend.has_logprobs:
        logprobs = backend.next_token_logprobs(prompts, CANDIDATES)
        if logprobs is not None:
            probs = [normalise(lp) for lp in logprobs]
    letters: list[str | None] = [None] * len(prompts)
    todo = [i for i, p in enumerate(probs) if p is None]
    if todo:
        texts = backend.generate([prompts[i] for i in todo], max_new_tokens=8)
        for i, text in zip(todo, texts, strict=True):
            letters[i] = parse_answer(text)
    return probs, letters


def _label(
    judge: Judge,
    aspect_orders: dict[str, list[tuple[bool, float | None, str | None]]],
    model_id: str,
    template_hash: str,
) -> Annotation | None:
    """One annotation from the per-aspect, per-order results ((swapped, P("A"), letter))."""
    values: dict[str, int] = {}
    details: dict[str, Any] = {}
    first_probs: list[float] | None = None
    method = METHOD_LOGPROBS
    for aspect, orders in aspect_orders.items():
        if all(p is not None for _, p, _ in orders):
            by_order = {swapped: p for swapped, p, _ in orders}
            p_a = combine_orders(by_order[False], by_order.get(True))
            values[aspect] = verdict_from_probability(p_a)
            details[aspect] = {
                "probs": [p_a, 1.0 - p_a],
                "orders": [{"swapped": s, "p_answer_a": p} for s, p, _ in orders],
            }
            if first_probs is None:
                first_probs = [p_a, 1.0 - p_a]
        else:
            method = METHOD_PARSED
            # A letter in the swapped order names the other response.
            original = [
                (None if letter is None else ("B" if letter == "A" else "A") if swapped else letter)
                if p is None
                else ("A" if p > 0.5 else "B" if p < 0.5 else None)
                for swapped, p, letter in orders
            ]
            value = verdict_from_answers(original)
            if value is None:
                continue
            values[aspect] = value
            details[aspect] = {
                "orders": [
                    {"swapped": s, "answer": letter, "p_answer_a": p} for s, p, letter in orders
                ]
            }
    if not values:
        return None
    reasons: dict[str, Any] = {"method": method, "aspects": details}
    first = details[next(iter(details))]
    reasons["orders"] = first["orders"]
    if method == METHOD_PARSED:
        reasons["note"] = NO_PROBABILITY
        probs, confidence = None, None
    else:
        probs = first_probs
        confidence = max(probs) if probs else None
    return Annotation(
        annotator_kind="lm",
        annotator=judge.name,
        confidence=confidence,
        probs=probs,
        model=model_id,
        template_hash=template_hash,
        reasons=reasons,
        origin="judge",
        **values,
    )


@dataclass(frozen=True)
class JudgeWork:
    """What scoring any chunk of a judge run needs besides the model: the judge, its aspects'
    prompt texts, the answer orders and the personas. Plain data, so a cluster's task gets it."""

    judge: Judge
    texts: dict[str, str]
    orders: tuple[bool, ...]
    personas: tuple[Persona, ...] = ()


PairResults = dict[str, list[tuple[bool, float | None, str | None]]]
# (the work, chunks of (instance id, instance)) -> each pair's results, chunk by chunk, in order
ChunkScorer = Callable[[JudgeWork, list[list[tuple[int, Instance]]]], Iterable[list[PairResults]]]


def score_pairs(
    backend: Backend, work: JudgeWork, pairs: list[tuple[int, Instance]]
) -> list[PairResults]:
    """Ask the model about each pair (every aspect, every order, every persona) in batches of
    the judge's batch size: per pair, per aspect, the (swapped, P("A"), letter) of each order."""
    judge, personas = work.judge, work.personas
    out: list[PairResults] = []
    for start in range(0, len(pairs), judge.batch_size):
        chunk = pairs[start : start + judge.batch_size]
        keys = [(i, a, s) for i in range(len(chunk)) for a in judge.aspects for s in work.orders]
        if personas:
            prompts = [
                render_persona_prompt(work.texts[a], persona, chunk[i][1], chunk[i][0],
                                      swapped=s, max_chars=judge.max_chars)
                for i, a, s in keys
                for persona in personas
            ]  # fmt: skip
        else:
            prompts = [
                render_prompt(work.texts[a], chunk[i][1], swapped=s, max_chars=judge.max_chars)
                for i, a, s in keys
            ]
        probs, letters = _score(backend, prompts)
        if personas:  # one answer per key: the personas' average
            per = len(personas)
            answers = list(zip(probs, letters, strict=True))
            merged = [average_personas(answers[k * per : (k + 1) * per]) for k in range(len(keys))]
            probs, letters = [m[0] for m in merged], [m[1] for m in merged]
        results: list[PairResults] = [{a: [] for a in judge.aspects} for _ in chunk]
        for (i, a, s), p, letter in zip(keys, probs, letters, strict=True):
            results[i][a].append((s, p, letter))
        out += results
    return out


def judge_dataset(
    store: Store,
    dataset: str,
    judge: Judge,
    backend: Backend | None,
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    model_id: str | None = None,
    score_chunks: ChunkScorer | None = None,
    chunk_pairs: int | None = None,
) -> dict[str, Any]:
    """Label every pair of a dataset that this judge has not labelled yet.

    Writes one LM annotation per instance through ``store.add_annotations``, a chunk at a time,
    so an interrupted run keeps what it finished and the next run resumes. ``progress(done,
    total)`` is called after each chunk. Returns counts: judged, skipped as done, skipped for
    lacking two responses, unparsed (no answer could be read), and the rate.

    By default ``backend`` scores the pairs here, a batch (the judge's batch size) per chunk.
    ``score_chunks`` scores them elsewhere instead (a job on a cluster hands each chunk of
    ``chunk_pairs`` pairs to a task with its own model); ``model_id`` then names the model, and
    no ``backend`` is needed here.
    """
    template = load_template(judge.template)
    texts = {aspect: template.text(aspect) for aspect in judge.aspects}
    template_hash = template.hash(judge.aspects)
    if backend is not None:
        model_id = backend.model_id
    if model_id is None or (backend is None and score_chunks is None):
        raise CuratorError("judging needs a backend, or a chunk scorer and the model's id")
    register_judge(store, judge, template, model_id)

    done, todo, incomplete = pairs_to_judge(store, dataset, judge.name, limit)
    personas = (
        simulated_personas(store, dataset, judge.personas, judge.persona_shots)
        if judge.personas
        else []
    )
    work = JudgeWork(judge, texts, (False, True) if judge.both_orders else (False,),
                     tuple(personas))  # fmt: skip
    size = chunk_pairs or judge.batch_size
    chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
    if score_chunks is None:
        score_chunks = _score_here(backend)
    started = time.monotonic()
    judged = unparsed = scored = 0
    methods = {METHOD_LOGPROBS: 0, METHOD_PARSED: 0}
    if progress:
        progress(0, len(todo))
    for chunk, results in zip(chunks, score_chunks(work, chunks), strict=False):
        labelled = []
        for (instance_id, _), result in zip(chunk, results, strict=True):
            annotation = _label(judge, result, model_id, template_hash)
            if annotation is None:
                unparsed += 1
                continue
            if personas:
                annotation.reasons["personas"] = [p.source for p in personas]
            methods[annotation.reasons["method"]] += 1
            labelled.append((instance_id, annotation))
        judged += store.add_annotations(labelled)
        scored += len(chunk)
        if progress:
            progress(scored, len(todo))
    seconds = time.monotonic() - started
    return {
        "judge": judge.name,
        "dataset": dataset,
        "model": model_id,
        "template_hash": template_hash,
        "judged": judged,
        "skipped_done": len(done),
        "skipped_incomplete": incomplete,
        "unparsed": unparsed,
        "methods": methods,
        "seconds": round(seconds, 2),
        "judgments_per_s": round(judged / seconds, 2) if judged and seconds > 0 else None,
    }


def _score_here(backend: Backend) -> ChunkScorer:
    """Score the chunks one after another with this process's backend, lazily (a stop between
    two chunks leaves the rest unscored)."""

    def scores(work: JudgeWork, chunks: list[list[tuple[int, Instance]]]) -> Iterator:
        for chunk in chunks:
            yield score_pairs(backend, work, chunk)

    return scores


# How a judge with the ``transformers`` backend runs its model: ``auto`` picks vLLM's offline
# engine where a CUDA GPU and vLLM (the ``gpu`` extra) are both present, else transformers.
ENGINES = ("auto", "transformers", "vllm")


def local_engine(wanted: str, *, has_cuda: bool, has_vllm: bool) -> str:
    """The engine that runs a local model judge here. The model, prompt and answer rule are
    the judge's either way, so its labels keep its name; the engine is reported with the run."""
    if wanted not in ENGINES:
        raise CuratorError(f"unknown judge engine {wanted!r}; choose one of {', '.join(ENGINES)}")
    if wanted == "vllm" and not has_vllm:
        raise CuratorError("the vllm engine needs vLLM on this node: "
                           "`pip install 'hybrid-curator[gpu]'`")  # fmt: skip
    if wanted == "auto":
        return "vllm" if has_cuda and has_vllm else "transformers"
    return wanted


def _node_has() -> tuple[bool, bool]:
    """(a CUDA GPU, vLLM) on this node."""
    import importlib.util

    import torch

    return torch.cuda.is_available(), importlib.util.find_spec("vllm") is not None


def open_backend(judge: Judge, workspace: Any, *, engine: str = "auto") -> Backend:
    """The backend a judge names, loading the embedded model from ``workspace`` when needed;
    a ``transformers`` judge runs on ``engine`` (:func:`local_engine`)."""
    from routing.backends import make_backend
    from routing.models import DEFAULT_MODEL, is_default, resolve_model

    if judge.backend == "openai":
        return make_backend(
            "openai", judge.model or "", url=judge.url, api_key_env=judge.api_key_env
        )
    kind = judge.backend
    if kind == "transformers":
        has_cuda, has_vllm = _node_has()
        kind = local_engine(engine, has_cuda=has_cuda, has_vllm=has_vllm)
    path = resolve_model(judge.model, workspace)
    model_id = DEFAULT_MODEL if is_default(judge.model) else judge.model
    return make_backend(kind, path, model_id=model_id, batch_size=judge.batch_size)
