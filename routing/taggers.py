"""Prompt taggers: which value of each tag dimension (``assets/tags/taxonomy.yaml``) a prompt has.

The embedding tagger (the default) compares a prompt's sentence vector with each value's example
prompts and takes the nearest value: thousands of prompts a second on a CPU, no generation. The LM
tagger asks a judge backend a multiple-choice question per dimension and reads the option letters'
log-probabilities (or parses the letter it writes), as the paper's tagger asked an LM.

Both answer ``unknown`` when nothing is near enough (the dimension's floor in the taxonomy): a
guessed tag is a wrong feature for the routing predictor, an abstention is no feature at all.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from assets import asset_path
from curation.errors import CuratorError
from curation.workspace import Workspace

if TYPE_CHECKING:
    from curation.embeddings import Encoder

TAXONOMY_FILE = asset_path("tags", "taxonomy.yaml")
UNKNOWN = "unknown"
# A value scores as the mean cosine of its `top_k` nearest examples (the taxonomy's, else TOP_K).
# safety_concern uses 3: one stray example close to a prompt ("kill a Python process" beside "kill
# my neighbour") no longer decides alone. Values with a few narrow examples (subjects) keep 1.
TOP_K = 1

Progress = Callable[[str, int, int], None]
# dimension -> (label per prompt, score per prompt)
Tags = dict[str, tuple[list[str], np.ndarray]]


@dataclass(frozen=True)
class TagValue:
    name: str
    description: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class TagFloor:
    """Below these a tagger answers ``unknown`` for a dimension instead of its nearest value."""

    similarity: float = field(
        default=0.0, metadata={"help": "Embedding tagger: least score of the best value."}
    )
    margin: float = field(
        default=0.0, metadata={"help": "Embedding tagger: least lead of the best value."}
    )
    probability: float = field(
        default=0.5, metadata={"help": "LM tagger: least probability of the chosen option."}
    )


@dataclass(frozen=True)
class TagDimension:
    name: str
    question: str
    values: tuple[TagValue, ...]
    floor: TagFloor = TagFloor()
    top_k: int = TOP_K  # embedding tagger: a value's score is the mean of its k nearest examples
    routing: bool = True  # whether the routing predictor sees this dimension's tags
    reason: str | None = None  # why routing leaves it out (a benchmark figure)


@dataclass(frozen=True)
class TagStatus:
    """Whether the routing predictor uses a tag dimension, and if not, why."""

    dimension: str
    used_by_predictor: bool
    reason: str | None


def _top_k(path: Path, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CuratorError(f"{path}: {name}.top_k must be a whole number of at least 1")
    return value


def _floor(path: Path, name: str, spec: Any) -> TagFloor:
    if spec is None:
        return TagFloor()
    known = set(TagFloor.__dataclass_fields__)
    if not isinstance(spec, dict) or set(spec) - known:
        raise CuratorError(f"{path}: {name}.floor takes {', '.join(sorted(known))}")
    try:
        return TagFloor(**{key: float(value) for key, value in spec.items()})
    except (TypeError, ValueError) as exc:
        raise CuratorError(f"{path}: {name}.floor needs numbers: {exc}") from exc


def load_taxonomy(path: str | Path | None = None) -> list[TagDimension]:
    """The tag dimensions, checked: every value needs a description and at least one example."""
    path = Path(path) if path else TAXONOMY_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CuratorError(f"cannot read the tag taxonomy {path}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise CuratorError(f"{path}: expected a mapping of tag dimensions")
    dimensions = []
    for name, spec in data.items():
        values = (spec or {}).get("values") or {}
        if not isinstance(values, dict) or len(values) < 2:
            raise CuratorError(f"{path}: dimension {name!r} needs at least two values")
        parsed = []
        for value, vspec in values.items():
            examples = tuple((vspec or {}).get("examples") or ())
            description = (vspec or {}).get("description")
            if not examples or not description:
                raise CuratorError(
                    f"{path}: {name}={value} needs a description and at least one example"
                )
            if str(value) == UNKNOWN:
                raise CuratorError(f"{path}: {name}={UNKNOWN} is the taggers' abstention")
            parsed.append(TagValue(str(value), str(description), tuple(map(str, examples))))
        question = (spec or {}).get("question") or f"Which {name} fits this request?"
        routing = (spec or {}).get("routing", True)
        reason = (spec or {}).get("reason")
        if not isinstance(routing, bool):
            raise CuratorError(f"{path}: {name}.routing must be true or false")
        if not routing and not reason:
            raise CuratorError(f"{path}: {name} is left out of routing: say why in `reason:`")
        dimensions.append(
            TagDimension(
                str(name),
                str(question),
                tuple(parsed),
                floor=_floor(path, str(name), (spec or {}).get("floor")),
                top_k=_top_k(path, str(name), (spec or {}).get("top_k", TOP_K)),
                routing=routing,
                reason=str(reason) if reason else None,
            )
        )
    return dimensions


def tag_status(taxonomy: list[TagDimension] | None = None) -> dict[str, TagStatus]:
    """Per tag dimension: whether the routing predictor uses it, and the taxonomy's reason if not."""
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    return {d.name: TagStatus(d.name, d.routing, None if d.routing else d.reason) for d in taxonomy}


class Tagger(Protocol):
    extractor: str

    def tag(
        self,
        prompts: Sequence[str],
        *,
        vectors: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Tags: ...


class EmbeddingTagger:
    """Each value scores as the mean cosine of its ``top_k`` nearest examples (``top_k`` given here,
    else the dimension's); the best value wins,
    unless its score or its lead over the runner-up is under the dimension's floor: ``unknown``.

    The nearest examples rather than all examples' mean: a value such as ``safety_concern=safe``
    covers prompts of every topic, and a mean of poems, recipes and code sits near none of them.
    """

    def __init__(
        self,
        encoder: Encoder,
        taxonomy: list[TagDimension] | None = None,
        *,
        top_k: int | None = None,
    ):
        self.encoder = encoder
        self.taxonomy = taxonomy or load_taxonomy()
        self.top_k = top_k
        self.extractor = f"tagger:embedding:{encoder.model_id}"
        # per dimension: example vectors and, per example, the index of its value
        self._examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for dimension in self.taxonomy:
            texts, owners = [], []
            for j, value in enumerate(dimension.values):
                texts.extend(value.examples)
                owners.extend([j] * len(value.examples))
            vectors = encoder.encode(texts).vectors
            self._examples[dimension.name] = (vectors, np.array(owners))

    def tag(
        self,
        prompts: Sequence[str],
        *,
        vectors: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Tags:
        if vectors is None:
            vectors = self.encoder.encode(list(prompts)).vectors
        out: Tags = {}
        for k, dimension in enumerate(self.taxonomy):
            examples, owners = self._examples[dimension.name]
            sims = vectors @ examples.T  # (prompts, examples)
            per_value = np.full((len(vectors), len(dimension.values)), -np.inf)
            top_k = self.top_k or dimension.top_k
            for j in range(len(dimension.values)):
                own = np.sort(sims[:, owners == j], axis=1)
                per_value[:, j] = own[:, -top_k:].mean(axis=1)
            best = per_value.argmax(axis=1)
            ranked = np.sort(per_value, axis=1)
            score, lead = ranked[:, -1], ranked[:, -1] - ranked[:, -2]
            sure = (score >= dimension.floor.similarity) & (lead >= dimension.floor.margin)
            labels = [
                dimension.values[j].name if ok else UNKNOWN
                for j, ok in zip(best, sure, strict=True)
            ]
            out[dimension.name] = (labels, score)
            if progress:
                progress("tags", k + 1, len(self.taxonomy))
        return out


def tag_question(prompt: str, dimension: TagDimension) -> str:
    """The multiple-choice question the LM tagger answers for one prompt and dimension."""
    options = "\n".join(
        f"{letter}. {value.name.replace('_', ' ')}: {value.description}"
        for letter, value in zip(string.ascii_uppercase, dimension.values, strict=False)
    )
    return (
        "Read the request below and answer a question about it.\n\n"
        f"Request:\n{prompt}\n\n"
        f"Question: {dimension.question}\n"
        f"Options:\n{options}\n\n"
        "Answer with the letter of one option only."
    )


class LMTagger:
    """A judge backend picks one option letter per prompt and dimension: ``unknown`` when no
    letter parses, or when the chosen letter's probability is under the floor (``min_probability``,
    else the dimension's ``floor.probability``)."""

    def __init__(
        self,
        backend: Any,
        taxonomy: list[TagDimension] | None = None,
        *,
        min_probability: float | None = None,
    ):
        from routing.backends import parse_answer

        self.backend = backend
        self.taxonomy = taxonomy or load_taxonomy()
        self.min_probability = min_probability
        self.extractor = f"tagger:lm:{backend.model_id}"
        self._parse = parse_answer

    def tag(
        self,
        prompts: Sequence[str],
        *,
        vectors: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Tags:
        out: Tags = {}
        for k, dimension in enumerate(self.taxonomy):
            letters = tuple(string.ascii_uppercase[: len(dimension.values)])
            questions = [tag_question(p, dimension) for p in prompts]
            logprobs = (
                self.backend.next_token_logprobs(questions, letters)
                if self.backend.has_logprobs
                else None
            )
            floor = (
                dimension.floor.probability
                if self.min_probability is None
                else self.min_probability
            )
            labels, scores = [], []
            if logprobs is not None:
                for found in logprobs:
                    if not found:
                        labels.append(UNKNOWN)
                        scores.append(0.0)
                        continue
                    top = max(found, key=found.get)
                    total = sum(np.exp(v) for v in found.values())
                    probability = float(np.exp(found[top]) / total)
                    value = dimension.values[letters.index(top)].name
                    labels.append(value if probability >= floor else UNKNOWN)
                    scores.append(probability)
            else:
                for text in self.backend.generate(questions, max_new_tokens=4):
                    letter = self._parse(text, letters)
                    labels.append(
                        dimension.values[letters.index(letter)].name if letter else UNKNOWN
                    )
                    scores.append(1.0 if letter else 0.0)
            out[dimension.name] = (labels, np.asarray(scores))
            if progress:
                progress("tags", k + 1, len(self.taxonomy))
        return out


class TaggerSettings(Protocol):
    """The tagger fields of ``routing.features.FeatureConfig`` (named here by shape, not imported:
    the features import the taggers)."""

    tagger: str
    tagger_backend: str
    tagger_model: str | None
    tagger_url: str | None


def make_tagger(
    config: TaggerSettings, *, encoder: Encoder, workspace: Workspace | None = None
) -> Tagger:
    if config.tagger == "embedding":
        return EmbeddingTagger(encoder)
    if config.tagger == "lm":
        from routing.backends import make_backend
        from routing.models import resolve_model

        model = resolve_model(config.tagger_model, workspace)
        backend = make_backend(
            config.tagger_backend,
            model,
            model_id=config.tagger_model or "smollm2-135m-instruct",
            url=config.tagger_url,
        )
        return LMTagger(backend)
    raise CuratorError(f"unknown tagger {config.tagger!r}")
