"""Instance features for routing: the Hybrid Preferences paper's lexical measures and prompt tags.

Every measure compares the two responses of a pair (or describes its prompt) and lands in [0, 1]:
similarities as they are, lengths as percentile ranks within the dataset. Each is binned in thirds
([0, .33] low, (.33, .67] mid, (.67, 1] high), and each tag dimension contributes its chosen value,
so an instance is a set of binary features such as ``cosine_sim=high`` or
``expertise_level=expert_domain_knowledge``. The store keeps one row per instance and measure
(``value`` the number, ``label`` the bin or tag), which routing, the agreement breakdowns and the
Route page all read.

Departures from the paper's code, all for running offline on a CPU: cosine similarity and the
BERTScore-like F1 use the shipped MiniLM (one forward pass serves both); entity similarity uses a
pattern-based entity finder instead of spaCy's NER model (and a true Jaccard); token counts use the
encoder's tokenizer instead of Llama's.

A features job on a Ray cluster computes the measures in shards of pairs, one task each
(:func:`measure_shard`), and joins them into the same numbers (:func:`finish_measures`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, astuple, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from curation.embeddings import EmbeddingCache, Encoder, EncoderConfig, greedy_match_f1
from curation.errors import CuratorError
from curation.store import Store
from routing.binning import bin_label, percentile_ranks
from routing.judge_signals import NAMES as JUDGE_NAMES
from routing.judge_signals import JudgeSignals, judge_feature_rows
from routing.taggers import UNKNOWN, TagDimension, load_taxonomy, make_tagger, tag_status

SIMILARITIES = ("bertscore", "bertscore_length", "cosine_sim", "entity_sim", "rouge")
LENGTHS = ("token_len_diff", "prompt_len", "len_shorter", "len_longer")
MEASURES = SIMILARITIES + LENGTHS
LEXICAL_EXTRACTOR = "lexical"
DOMAIN = "domain"
MAX_DOMAINS = 50  # more distinct values than this is an id, not a domain

# (stage, done, total)
Progress = Callable[[str, int, int], None]


# ---- lexical measures ------------------------------------------------------------------------

_ENTITY = re.compile(
    r"\b(?:[A-Z][\w'-]*(?:\s+(?:(?:of|the|de)\s+)?[A-Z][\w'-]*)*)"  # capitalised names
    r"|\b\d+(?:[.,]\d+)*\b"  # numbers, dates, amounts
    r"|\"[^\"]{2,40}\""  # quoted names
)
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n]\s*)$")
_NOT_ENTITIES = frozenset(
    "i a an the this that these those it its if in on at for to of and or but so as is are was "
    "be here there what when where why how who which yes no not you your we our they their he she "
    "my me do does first second then also however finally note step".split()
)


def entities(text: str) -> set[str]:
    """Names, numbers and quoted strings in a text, lower-cased: a pattern-based stand-in for NER.

    A capitalised word that only opens a sentence ("The", "However") is not a name.
    """
    found: set[str] = set()
    for match in _ENTITY.finditer(text or ""):
        span = match.group(0).strip('"').strip()
        words = span.split()
        if not words:
            continue
        at_start = bool(_SENTENCE_START.search(text[: match.start()]))
        if at_start and words[0].lower() in _NOT_ENTITIES:
            words = words[1:]
        if len(words) == 1 and words[0].lower() in _NOT_ENTITIES:
            continue
        if words:
            found.add(" ".join(words).lower())
    return found


def entity_similarity(a: str, b: str) -> float:
    """Jaccard overlap of the two responses' entities; 1 when neither names anything."""
    left, right = entities(a), entities(b)
    union = left | right
    if not union:
        return 1.0
    return len(left & right) / len(union)


def length_penalised(f1: float, tokens_a: int, tokens_b: int) -> float:
    """The paper's BERTScore with a brevity penalty: F1 * exp(1 - longer / shorter)."""
    longer, shorter = max(tokens_a, tokens_b), min(tokens_a, tokens_b)
    if shorter == 0:
        return 0.0
    return f1 * math.exp(1 - longer / shorter)


def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)


# ---- configuration and results ---------------------------------------------------------------


@dataclass
class FeatureConfig:
    """What `curator features` computes and with which models."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tagger: str = field(
        default="embedding",
        metadata={"help": "embedding (fast, default), lm (a judge backend answers), or none."},
    )
    tagger_backend: str = field(default="transformers", metadata={"help": "LM tagger backend."})
    tagger_model: str | None = field(
        default=None, metadata={"help": "LM tagger model (default: the embedded SmolLM2)."}
    )
    tagger_url: str | None = field(default=None, metadata={"help": "openai backend server URL."})
    chunk_pairs: int = field(
        default=256, metadata={"help": "Pairs encoded together (bounds memory for token vectors)."}
    )
    shard_pairs: int = field(
        default=4096,
        metadata={"help": "Pairs per measure shard when a features job runs on a Ray cluster "
                          "(rounded up to whole chunk_pairs): each shard is a task, with a GPU "
                          "when device is cuda."},
    )  # fmt: skip
    judge: str | None = field(
        default=None,
        metadata={"help": "LM judge whose confidence and position consistency become features "
                          "(default: the one with the most labels on the dataset)."},
    )  # fmt: skip
    domain: bool = field(
        default=True,
        metadata={"help": "Use the dataset's own domain column (a source, a subset) as a feature, "
                          f"where it has 2 to {MAX_DOMAINS} distinct values."},
    )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a job's spec), read back by :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        values = dict(data)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise CuratorError(f"unknown feature settings: {', '.join(sorted(unknown))}")
        encoder = values.pop("encoder", None) or {}
        return cls(encoder=EncoderConfig(**encoder), **values).validate()

    def validate(self) -> FeatureConfig:
        if self.tagger not in ("embedding", "lm", "none"):
            raise CuratorError(f"tagger must be embedding, lm or none, not {self.tagger!r}")
        if self.chunk_pairs < 1:
            raise CuratorError("chunk_pairs must be at least 1")
        if self.shard_pairs < 1:
            raise CuratorError(f"shard_pairs must be at least 1, not {self.shard_pairs}")
        return self


@dataclass
class PairTexts:
    """What features read from a dataset: ids, prompts and the two responses, in id order."""

    instance_ids: list[int]
    prompts: list[str]
    response_a: list[str]
    response_b: list[str]

    @classmethod
    def load(cls, store: Store, dataset: str) -> PairTexts:
        ds = store.dataset(dataset)
        if ds["kind"] not in ("preference", "eval"):
            raise CuratorError(
                f"{dataset!r} is a {ds['kind']} dataset; features compare the two responses "
                "of preference (or eval) pairs"
            )
        rows = store.conn.execute(
            "SELECT id, prompt, response_a, response_b FROM instances WHERE dataset_id = ? "
            "ORDER BY id",
            (ds["id"],),
        ).fetchall()
        if not rows:
            raise CuratorError(f"{dataset!r} has no instances")
        return cls(
            [r[0] for r in rows],
            [r[1] or "" for r in rows],
            [r[2] or "" for r in rows],
            [r[3] or "" for r in rows],
        )

    def __len__(self) -> int:
        return len(self.instance_ids)


@dataclass
class RawMeasures:
    """The measures of a run of pairs before the dataset-wide step (lengths still token counts,
    BERTScores not yet clipped), with the run's sentence vectors. Each pair's numbers depend on
    that pair alone, so runs computed apart (shards) join into the measures of the whole."""

    values: dict[str, np.ndarray]
    prompt_vectors: np.ndarray
    a_vectors: np.ndarray
    b_vectors: np.ndarray


def raw_measures(
    texts: PairTexts,
    encoder: Encoder,
    *,
    start: int = 0,
    stop: int | None = None,
    chunk_pairs: int = 256,
    progress: Progress | None = None,
) -> RawMeasures:
    """The raw measures and vectors of pairs ``start`` to ``stop`` (default: all), encoded
    ``chunk_pairs`` pairs at a time from ``start``."""
    stop = len(texts) if stop is None else stop
    n = stop - start
    raw = {name: np.zeros(n) for name in MEASURES}
    scorer = _rouge_scorer()
    tokenizer = encoder.tokenizer
    prompt_vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    a_vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    b_vectors = np.zeros((n, encoder.dim), dtype=np.float32)

    def count_tokens(batch: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]]

    for chunk_start in range(start, stop, chunk_pairs):
        chunk_stop = min(chunk_start + chunk_pairs, stop)
        a = texts.response_a[chunk_start:chunk_stop]
        b = texts.response_b[chunk_start:chunk_stop]
        prompts = texts.prompts[chunk_start:chunk_stop]
        encoded = encoder.encode(a + b, with_tokens=True)
        size = chunk_stop - chunk_start
        vec_a, vec_b = encoded.vectors[:size], encoded.vectors[size:]
        rows = slice(chunk_start - start, chunk_stop - start)
        a_vectors[rows], b_vectors[rows] = vec_a, vec_b
        prompt_vectors[rows] = encoder.encode(prompts).vectors
        len_a, len_b, len_p = count_tokens(a), count_tokens(b), count_tokens(prompts)
        for k in range(size):
            i = chunk_start - start + k
            f1 = greedy_match_f1(encoded.tokens[k], encoded.tokens[size + k])
            raw["bertscore"][i] = f1
            raw["bertscore_length"][i] = length_penalised(f1, len_a[k], len_b[k])
            raw["cosine_sim"][i] = float(np.clip(vec_a[k] @ vec_b[k], 0.0, 1.0))
            raw["entity_sim"][i] = entity_similarity(a[k], b[k])
            raw["rouge"][i] = scorer.score(b[k], a[k])["rouge1"].fmeasure
            raw["token_len_diff"][i] = abs(len_a[k] - len_b[k])
            raw["prompt_len"][i] = len_p[k]
            raw["len_shorter"][i] = min(len_a[k], len_b[k])
            raw["len_longer"][i] = max(len_a[k], len_b[k])
        if progress:
            progress("measures", chunk_stop - start, n)
    return RawMeasures(raw, prompt_vectors, a_vectors, b_vectors)


def finish_measures(
    parts: Sequence[RawMeasures],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Runs of raw measures, in pair order, as :func:`lexical_measures` returns them: lengths as
    percentile ranks within all the pairs, BERTScores clipped to [0, 1]."""
    values = {name: np.concatenate([part.values[name] for part in parts]) for name in MEASURES}
    for name in LENGTHS:
        values[name] = percentile_ranks(values[name])
    for name in ("bertscore", "bertscore_length"):
        values[name] = np.clip(values[name], 0.0, 1.0)
    prompt_vectors = np.concatenate([part.prompt_vectors for part in parts])
    response_vectors = np.concatenate(
        [part.a_vectors for part in parts] + [part.b_vectors for part in parts]
    )
    return values, prompt_vectors, response_vectors


def lexical_measures(
    texts: PairTexts,
    encoder: Encoder,
    *,
    chunk_pairs: int = 256,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The nine measures per pair (lengths already as percentile ranks), and the prompt and the
    two responses' sentence vectors (prompts first, then A, then B, for the embedding cache)."""
    raw = raw_measures(texts, encoder, chunk_pairs=chunk_pairs, progress=progress)
    return finish_measures([raw])


# ---- measures in shards (a features job on a cluster) ----------------------------------------


@dataclass(frozen=True)
class MeasureWork:
    """What every measure shard reads: all the pairs (a cluster's object store holds them once,
    whatever the number of shards) and the encoder each shard builds where it runs."""

    texts: PairTexts
    encoder: EncoderConfig
    chunk_pairs: int


class ShardMap(Protocol):
    """Runs ``fn(shared, item)`` for each item and yields the results in the items' order, in
    this process or as tasks on other nodes. A job adapts its task pool to this shape
    (``training.task_pool``; routing does not import training). It raises when it cannot deliver
    every result."""

    def __call__(
        self,
        fn: Callable[[MeasureWork, tuple[int, int]], RawMeasures],
        shared: MeasureWork,
        items: Sequence[tuple[int, int]],
    ) -> Iterable[RawMeasures]: ...


# One encoder per process: a Ray worker process runs shard after shard and loads the model once.
_shard_encoders: dict[tuple[Any, ...], Encoder] = {}


def shard_encoder(config: EncoderConfig) -> Encoder:
    """The encoder for ``config``, loaded on the first shard this process runs (only the latest
    config is kept, so a long-lived worker holds one model)."""
    key = astuple(config)
    if key not in _shard_encoders:
        _shard_encoders.clear()
        _shard_encoders[key] = Encoder(config)
    return _shard_encoders[key]


def measure_shard(work: MeasureWork, bounds: tuple[int, int]) -> RawMeasures:
    """The raw measures of pairs ``bounds`` = (start, stop): the body of one shard's task."""
    start, stop = bounds
    encoder = shard_encoder(work.encoder)
    return raw_measures(work.texts, encoder, start=start, stop=stop, chunk_pairs=work.chunk_pairs)


def shard_bounds(n: int, shard_pairs: int, chunk_pairs: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard of ``n`` pairs. A shard holds whole chunks, so each pair is
    encoded in the same batch as without shards, and the measures come out the same bit for bit
    wherever the arithmetic is the same (same device and thread count)."""
    step = math.ceil(shard_pairs / chunk_pairs) * chunk_pairs
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def sharded_measures(
    texts: PairTexts,
    config: FeatureConfig,
    shard_map: ShardMap,
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """:func:`lexical_measures` with the pairs split in shards of ``config.shard_pairs``, each
    run through ``shard_map``; progress counts the shards done."""
    bounds = shard_bounds(len(texts), config.shard_pairs, config.chunk_pairs)
    work = MeasureWork(texts, config.encoder, config.chunk_pairs)
    parts: list[RawMeasures] = []
    for part in shard_map(measure_shard, work, bounds):
        parts.append(part)
        if progress:
            progress("measure shards", len(parts), len(bounds))
    if len(parts) != len(bounds):
        raise CuratorError(f"the measures stopped after {len(parts)} of {len(bounds)} shards")
    return finish_measures(parts)


# ---- computing and storing -------------------------------------------------------------------


@dataclass
class FeatureSummary:
    dataset: str
    instances: int
    measures: list[str]
    tags: list[str]
    counts: dict[str, int]  # binary feature -> instances that have it

    def tag_report(self) -> dict[str, dict[str, Any]]:
        """Per tag dimension: the share of instances tagged ``unknown``, and whether the routing
        predictor uses the dimension (and the taxonomy's reason when it does not)."""
        status = tag_status()
        report = {}
        for name in self.tags:
            known = status.get(name)
            report[name] = {
                "unknown_share": round(
                    self.counts.get(f"{name}={UNKNOWN}", 0) / max(self.instances, 1), 4
                ),
                "used_by_predictor": known.used_by_predictor if known else True,
                "reason": known.reason if known else None,
            }
        return report

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "instances": self.instances,
            "measures": self.measures,
            "tags": self.tag_report(),
            "features": self.counts,
        }


def domain_rows(store: Store, dataset: str) -> list[tuple[int, str, float, str, str]]:
    """``domain=<value>`` feature rows from the instances' own domain column: where a judge errs
    is often a matter of where the pair came from (LLMBar's adversarial subsets, the demo's
    maths and code). None where the column is empty or has too few or too many values."""
    ds = store.dataset(dataset)
    found = store.conn.execute(
        "SELECT id, domain FROM instances WHERE dataset_id = ? AND domain IS NOT NULL "
        "AND domain != '' ORDER BY id",
        (ds["id"],),
    ).fetchall()
    if not 2 <= len({r[1] for r in found}) <= MAX_DOMAINS:
        return []
    return [(int(r[0]), DOMAIN, 0.0, "metadata", str(r[1])) for r in found]


def compute_features(
    store: Store,
    dataset: str,
    config: FeatureConfig | None = None,
    *,
    progress: Progress | None = None,
    shard_map: ShardMap | None = None,
) -> FeatureSummary:
    """Compute, bin and store every feature of a dataset's pairs (replacing earlier ones).

    The sentence vectors go to the workspace's embedding cache on the way, so the reward probes
    of a sweep find them there. With ``shard_map``, the measures and vectors are computed in
    shards of ``config.shard_pairs`` pairs through it (a job on a cluster), with the same
    results.
    """
    config = (config or FeatureConfig()).validate()
    texts = PairTexts.load(store, dataset)
    # read before the slow part, so that a judge named wrongly fails at once
    signals = JudgeSignals.load(store, dataset, config.judge)
    if shard_map is None:
        encoder = Encoder(config.encoder)
        raw, prompt_vectors, response_vectors = lexical_measures(
            texts, encoder, chunk_pairs=config.chunk_pairs, progress=progress
        )
    else:
        # The shards encode the pairs. Here the encoder only names the cache and the extractor
        # and encodes the embedding tagger's few examples, so it runs on the CPU: the process
        # that drives a cluster's shards needs no GPU of its own.
        encoder = Encoder(replace(config.encoder, device="cpu"))
        raw, prompt_vectors, response_vectors = sharded_measures(
            texts, config, shard_map, progress=progress
        )
    if store.workspace is not None:
        cache = EmbeddingCache.for_workspace(store.workspace)
        cache.add(encoder, dataset, texts.prompts, prompt_vectors)
        cache.add(encoder, dataset, texts.response_a + texts.response_b, response_vectors)

    rows: list[tuple[int, str, float, str, str]] = []
    extractor = f"{LEXICAL_EXTRACTOR}:{encoder.model_id}"
    for name in MEASURES:
        for instance_id, value in zip(texts.instance_ids, raw[name], strict=True):
            rows.append((instance_id, name, float(value), extractor, bin_label(float(value))))

    tag_names: list[str] = []
    if config.tagger != "none":
        tagger = make_tagger(config, encoder=encoder, workspace=store.workspace)
        tags = tagger.tag(texts.prompts, vectors=prompt_vectors, progress=progress)
        for dimension, (labels, scores) in tags.items():
            tag_names.append(dimension)
            for instance_id, label, score in zip(texts.instance_ids, labels, scores, strict=True):
                rows.append((instance_id, dimension, float(score), tagger.extractor, label))

    rows += judge_feature_rows(signals)  # none where the dataset has no LM labels
    if config.domain:
        rows += domain_rows(store, dataset)
    names = [*MEASURES, *tag_names, *JUDGE_NAMES, DOMAIN]
    with store.write():
        for chunk_start in range(0, len(texts.instance_ids), 500):
            ids = texts.instance_ids[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(ids))
            store.conn.execute(
                f"DELETE FROM features WHERE instance_id IN ({marks}) AND "  # noqa: S608
                f"name IN ({','.join('?' * len(names))})",
                [*ids, *names],
            )
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor, label) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    matrix = FeatureMatrix.load(store, dataset)
    return FeatureSummary(
        dataset=dataset,
        instances=len(texts),
        measures=list(MEASURES),
        tags=tag_names,
        counts=dict(zip(matrix.names, matrix.counts().tolist(), strict=True)),
    )


@dataclass
class FeatureMatrix:
    """Binary features of a dataset's instances: ``matrix[i, j]`` is instance i having feature j.

    Feature names are ``measure=bin`` or ``tag=value``, sorted, so two datasets (or a dataset and a
    trained predictor) can be aligned by name with :meth:`aligned`.
    """

    instance_ids: np.ndarray
    names: list[str]
    matrix: np.ndarray  # (n_instances, n_features) bool

    @classmethod
    def load(cls, store: Store, dataset: str) -> FeatureMatrix:
        ds = store.dataset(dataset)
        ids = np.array(
            [
                r[0]
                for r in store.conn.execute(
                    "SELECT id FROM instances WHERE dataset_id = ? ORDER BY id", (ds["id"],)
                )
            ],
            dtype=np.int64,
        )
        rows = store.conn.execute(
            "SELECT f.instance_id, f.name || '=' || f.label FROM features f "
            "JOIN instances i ON i.id = f.instance_id "
            "WHERE i.dataset_id = ? AND f.label IS NOT NULL",
            (ds["id"],),
        ).fetchall()
        if not rows:
            raise CuratorError(
                f"{dataset!r} has no features yet: run `curator features {dataset}` first"
            )
        names = sorted({r[1] for r in rows})
        column = {name: j for j, name in enumerate(names)}
        row_of = {int(i): k for k, i in enumerate(ids)}
        matrix = np.zeros((len(ids), len(names)), dtype=bool)
        for instance_id, name in rows:
            matrix[row_of[instance_id], column[name]] = True
        return cls(ids, names, matrix)

    def counts(self) -> np.ndarray:
        return self.matrix.sum(axis=0)

    def aligned(self, names: Sequence[str]) -> FeatureMatrix:
        """The same instances with exactly these columns (absent features are all False)."""
        index = {name: j for j, name in enumerate(self.names)}
        out = np.zeros((len(self.instance_ids), len(names)), dtype=bool)
        for j, name in enumerate(names):
            if name in index:
                out[:, j] = self.matrix[:, index[name]]
        return FeatureMatrix(self.instance_ids, list(names), out)

    def for_routing(self, taxonomy: list[TagDimension] | None = None) -> FeatureMatrix:
        """The columns the routing predictor learns from: no ``tag=unknown`` (an abstention is
        not a feature) and no tag dimension the taxonomy leaves out of routing. Lexical measures,
        ``judge_*`` and ``domain`` columns always stay."""
        left_out = {d.name for d in (taxonomy or load_taxonomy()) if not d.routing}
        keep = []
        for name in self.names:
            base, _, value = name.partition("=")
            if base in MEASURES or base == DOMAIN or base.startswith("judge_"):
                keep.append(name)
            elif value != UNKNOWN and base not in left_out:
                keep.append(name)
        return self.aligned(keep)

    def subset(self, instance_ids: Sequence[int]) -> FeatureMatrix:
        row_of = {int(i): k for k, i in enumerate(self.instance_ids)}
        rows = [row_of[int(i)] for i in instance_ids]
        return FeatureMatrix(
            np.asarray(instance_ids, dtype=np.int64), self.names, self.matrix[rows]
        )
