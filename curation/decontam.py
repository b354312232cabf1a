"""Decontamination against eval sets, the Tulu 3 rule, fast enough for millions of prompts.

The rule (open-instruct's ``decontamination/search.py``, as Tulu 3 applied it): training prompts
(user turns) and eval prompts are cut into word 8-grams; an eval instance *overlaps* a training
instance when more than 50% of the eval instance's tokens lie in 8-grams that the training
instance also has; a training source is *flagged* when its rows overlap more than 2% of an eval
set's instances. The curator then removes the matching rows or drops the flagged source.

How it is fast: Arrow splits the texts on whitespace and finds the distinct chunks, so Python
cuts and hashes each distinct chunk once; 8-grams become 64-bit rolling hashes in numpy; one
pandas hash lookup finds the training n-grams that occur in any eval set; only those hits are
scored. Batches run on a thread pool (Arrow, numpy and pandas release the GIL). Tokens are the
runs of letters, digits and underscores of the lower-cased text (``re``'s ``\\w+``):
punctuation separates tokens and is not one, so formatting changes do not hide a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.errors import CuratorError

if TYPE_CHECKING:
    from curation.store import Store

NGRAM = 8
MATCH_THRESHOLD = 0.5
SOURCE_THRESHOLD = 0.02
ACTIONS = ("remove_rows", "drop_source", "report")
# Fields that hold an eval set's prompt, tried in this order when none is named: the fields the
# usual eval files use (GSM8K/MATH question, HumanEval/IFEval/XSTest prompt, MATH problem,
# HarmBench Behavior, WildJailbreak adversarial, Alpaca-style instruction).
PROMPT_FIELDS = (
    "prompt",
    "question",
    "problem",
    "Behavior",
    "adversarial",
    "instruction",
    "turns",
    "messages",
    "vanilla",
    "input",
)
_WORD = re.compile(r"\w+")  # a token: a run of letters, digits and underscores
_MULTIPLIER = np.uint64(0x100000001B3)  # the FNV prime: odd, so the rolling hash mixes well
BATCH = 50_000

Progress = Callable[[int, int], None]


@dataclass
class DecontamConfig:
    """The Tulu 3 rule's numbers and what to do about a match (one definition for spec files,
    the CLI and the page)."""

    ngram: int = field(default=NGRAM, metadata={"help": "Words per n-gram (Tulu 3: 8)."})
    threshold: float = field(
        default=MATCH_THRESHOLD,
        metadata={"help": "An eval instance overlaps a training row when more than this share of "
                          "its tokens are in n-grams the row also has (Tulu 3: 0.5)."},
    )  # fmt: skip
    source_threshold: float = field(
        default=SOURCE_THRESHOLD,
        metadata={"help": "A source is flagged when it overlaps more than this share of an eval "
                          "set's instances (Tulu 3: 0.02)."},
    )  # fmt: skip
    action: str = field(
        default="remove_rows",
        metadata={"help": "remove_rows: drop the matching rows; drop_source: drop flagged sources "
                          "whole (and matching rows elsewhere); report: keep everything."},
    )  # fmt: skip

    def validate(self) -> DecontamConfig:
        if self.ngram < 1:
            raise CuratorError(f"decontamination ngram must be at least 1, got {self.ngram}")
        if not 0.0 <= self.threshold < 1.0:
            raise CuratorError(f"decontamination threshold must be in [0, 1), got {self.threshold}")
        if not 0.0 <= self.source_threshold < 1.0:
            raise CuratorError(
                f"decontamination source_threshold must be in [0, 1), got {self.source_threshold}"
            )
        if self.action not in ACTIONS:
            raise CuratorError(
                f"decontamination action must be one of {', '.join(ACTIONS)}, not {self.action!r}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- prompt sets -----------------------------------------------------------------------------


@dataclass
class PromptSet:
    """The prompts of an eval set (or any dataset), each with an id to report it by."""

    name: str
    ids: list[str]
    texts: list[str]
    origin: str = ""  # the dataset or file it was read from

    def __len__(self) -> int:
        return len(self.texts)


def user_text(prompt: str | None, messages: list[dict[str, str]] | None) -> str:
    """What decontamination compares for one instance: its user turns (the prompt alone when
    there is no conversation)."""
    if messages:
        turns = [m.get("content") or "" for m in messages if m.get("role") == "user"]
        if turns:
            return "\n".join(turns)
    return prompt or ""


def load_prompt_set(
    store: Store | None, ref: str, *, field: str | None = None, limit: int | None = None
) -> PromptSet:
    """An eval set by workspace dataset name, or from a file (JSONL, JSON, CSV/TSV, Parquet, a
    saved HF folder; ``.gz`` too). A file's prompt field is ``field`` or the first of
    :data:`PROMPT_FIELDS` it has; a list value (MT-bench turns, messages) joins its user text."""
    if store is not None and store.find_dataset(ref):
        dataset = store.dataset(ref)
        rows = store.conn.execute(
            "SELECT uid, prompt, messages FROM instances WHERE dataset_id = ? ORDER BY id",
            (dataset["id"],),
        ).fetchall()
        if limit is not None:
            rows = rows[:limit]
        texts = [user_text(r[1], json.loads(r[2]) if r[2] else None) for r in rows]
        return PromptSet(ref, [str(r[0]) for r in rows], texts, origin=f"dataset {ref}")
    path = Path(ref).expanduser()
    if not path.exists():
        known = ""
        if store is not None:
            known = (
                " (datasets: "
                + (", ".join(d["name"] for d in store.list_datasets()) or "none yet")
                + ")"
            )
        raise CuratorError(f"{ref!r} is neither a dataset of this workspace nor a file{known}")
    return _prompt_file(path, field=field, limit=limit)


def _prompt_file(path: Path, *, field: str | None, limit: int | None) -> PromptSet:
    from curation.readers import RowError, open_source

    source = open_source(path)
    ids: list[str] = []
    texts: list[str] = []
    chosen = field
    for line, record in source.records:
        if isinstance(record, RowError):
            raise CuratorError(f"{path}:{record.line}: {record.message}")
        if chosen is None:
            chosen = next((f for f in PROMPT_FIELDS if f in record), None)
            if chosen is None:
                raise CuratorError(
                    f"{path}:{line}: no prompt field found (looked for "
                    f"{', '.join(PROMPT_FIELDS)}); name one with --field"
                )
        if chosen not in record:
            raise CuratorError(f"{path}:{line} [{chosen}]: missing prompt field")
        text = _as_text(record[chosen])
        if text is None:
            raise CuratorError(f"{path}:{line} [{chosen}]: expected text or a list of turns")
        ids.append(str(record.get("id") or record.get("task_id") or record.get("key") or line))
        texts.append(text)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise CuratorError(f"{path}: no prompts in the file")
    return PromptSet(_set_name(path), ids, texts, origin=str(path))


def _set_name(path: Path) -> str:
    """A short name for an eval file: its folder's name when the file's own name is generic
    (gsm8k/test.jsonl) or repeats the folder's (harmbench/harmbench_behaviors_text_all.csv)."""
    stem = path.name.split(".")[0] if path.is_file() else path.name
    folder = path.resolve().parent.name
    generic = {"test", "eval", "input_data", "data", "train", "validation", "dev"}
    if folder and (stem.lower() in generic or stem.lower().startswith(folder.lower())):
        return folder
    return stem


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return "\n".join(value)
        if all(isinstance(v, dict) for v in value):
            return user_text(None, value)
    return None


# ---- tokens and n-grams ----------------------------------------------------------------------


@dataclass
class Tokens:
    """Token hashes of many texts, concatenated, with each text's start (``offsets[i]``)."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len(texts) + 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def tokenize(texts: Sequence[str]) -> Tokens:
    """The tokens of each text, as stable 64-bit hashes: the ``\\w+`` runs of the lower-cased
    text, exactly as ``re.findall(r"\\w+", text.lower())`` finds them.

    Arrow splits the texts on whitespace and collects the distinct chunks ("dog.", "(hello");
    Python cuts each distinct chunk into words once; numpy lays the words out for every
    occurrence. Only the distinct chunks of a batch (tens of thousands) ever reach Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(texts):
        return Tokens(np.zeros(0, np.uint64), np.zeros(1, np.int64))
    parts = pc.utf8_split_whitespace(pa.array(texts, type=pa.large_string()))
    chunk_owner = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(pc.list_flatten(parts))
    words_of: dict[str, int] = {}
    per_chunk: list[int] = []
    flat: list[int] = []
    for chunk in encoded.dictionary.to_pylist():
        words = _WORD.findall(chunk.lower())
        per_chunk.append(len(words))
        for word in words:
            found = words_of.get(word)
            if found is None:
                found = words_of[word] = _word_hash(word)
            flat.append(found)
    chunk_count = np.asarray(per_chunk, dtype=np.int64)
    chunk_start = np.concatenate([[0], np.cumsum(chunk_count)[:-1]]).astype(np.int64)
    word_hashes = np.asarray(flat, dtype=np.uint64)
    occurrence = encoded.indices.to_numpy(zero_copy_only=False)
    n_words = chunk_count[occurrence]
    total = int(n_words.sum())
    which = np.repeat(np.arange(len(occurrence)), n_words)
    within = np.arange(total) - np.repeat(np.cumsum(n_words) - n_words, n_words)
    hashes = word_hashes[chunk_start[occurrence][which] + within]
    counts = np.bincount(chunk_owner[which], minlength=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Tokens(hashes, offsets)


def ngram_hashes(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every n-gram that lies inside one text: its hash, its text and its start token.

    A polynomial rolling hash over the token hashes (wrapping uint64 arithmetic, in place).
    """
    h = tokens.hashes
    m = len(h) - n + 1
    if m <= 0:
        empty = np.zeros(0, np.int64)
        return np.zeros(0, np.uint64), empty, empty
    grams = h[:m].copy()
    for k in range(1, n):
        grams *= _MULTIPLIER
        grams += h[k : k + m]
    owner = np.repeat(np.arange(len(tokens.offsets) - 1), tokens.lengths())
    starts = np.flatnonzero(owner[:m] == owner[n - 1 :])
    owners = owner[starts]
    return grams[starts], owners, starts - tokens.offsets[owners]


class NgramIndex:
    """The n-grams of one or more eval sets: for each distinct n-gram, the eval instances (and
    token positions) that have it. One index serves every eval set, so a training batch is cut
    into n-grams and looked up once."""

    def __init__(self, prompts: PromptSet | Sequence[PromptSet], n: int = NGRAM):
        import pandas as pd

        self.sets = [prompts] if isinstance(prompts, PromptSet) else list(prompts)
        self.n = n
        # instance k of the index is instance local[k] of eval set owner_set[k]
        self.owner_set = np.repeat(np.arange(len(self.sets)), [len(s) for s in self.sets])
        self.local = np.concatenate([np.arange(len(s)) for s in self.sets] or [np.zeros(0, int)])
        tokens = tokenize([t for s in self.sets for t in s.texts])
        self.lengths = tokens.lengths()
        grams, owners, positions = ngram_hashes(tokens, n)
        order = np.argsort(grams, kind="stable")
        grams, owners, positions = grams[order], owners[order], positions[order]
        unique, starts = np.unique(grams, return_index=True)
        self._lookup = pd.Index(unique)
        self._lookup.get_indexer(unique[:1])  # build the hash table now, not racing in threads
        self._starts = np.append(starts, len(grams)).astype(np.int64)
        self._owners = owners.astype(np.int64)
        self._positions = positions.astype(np.int64)

    def too_short(self, k: int = 0) -> int:
        """Instances of eval set ``k`` with fewer tokens than an n-gram: no training row can
        overlap them."""
        return int(((self.lengths < self.n) & (self.owner_set == k)).sum())

    def overlaps(
        self, tokens: Tokens, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(training text, eval set, eval instance, score) for every pair scoring above
        ``threshold``; the score is the share of the eval instance's tokens covered by the
        n-grams the two share."""
        grams, owners, _ = ngram_hashes(tokens, self.n)
        found = self._lookup.get_indexer(grams)
        hit = found >= 0
        if not hit.any():
            empty = np.zeros(0, np.int64)
            return empty, empty, empty, np.zeros(0)
        train, gram = owners[hit], found[hit]
        # every (training text, eval instance, eval position) the shared n-grams cover
        first, last = self._starts[gram], self._starts[gram + 1]
        counts = last - first
        rows = np.repeat(np.arange(len(gram)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        postings = first[rows] + within
        t = train[rows]
        e = self._owners[postings]
        p = self._positions[postings]
        order = np.lexsort((p, e, t))
        t, e, p = t[order], e[order], p[order]
        distinct = np.ones(len(t), dtype=bool)
        distinct[1:] = (t[1:] != t[:-1]) | (e[1:] != e[:-1]) | (p[1:] != p[:-1])
        t, e, p = t[distinct], e[distinct], p[distinct]
        # tokens covered by the union of [p, p + n) per pair: n for the first window, then the
        # gap to the previous window's start (capped at n) for each later one
        new_pair = np.ones(len(t), dtype=bool)
        new_pair[1:] = (t[1:] != t[:-1]) | (e[1:] != e[:-1])
        step = np.full(len(t), self.n, dtype=np.int64)
        step[1:] = np.where(new_pair[1:], self.n, np.minimum(np.diff(p), self.n))
        starts = np.flatnonzero(new_pair)
        covered = np.add.reduceat(step, starts)
        pair_t, pair_e = t[starts], e[starts]
        score = covered / self.lengths[pair_e]
        keep = score > threshold
        pair_e = pair_e[keep]
        return pair_t[keep], self.owner_set[pair_e], self.local[pair_e], score[keep]


# ---- the report ------------------------------------------------------------------------------


@dataclass
class SourceOverlap:
    """One training source against one eval set."""

    source: str
    eval_set: str
    eval_instances: int
    overlapping: int  # eval instances some row of the source overlaps
    rows: int  # rows of the source that overlap some eval instance
    flagged: bool

    @property
    def fraction(self) -> float:
        return self.overlapping / self.eval_instances if self.eval_instances else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 6)}


@dataclass
class Match:
    """A training row and the eval instance it overlaps, with the overlap score."""

    row: int
    source: str
    eval_set: str
    eval_id: str
    score: float


@dataclass
class DecontamReport:
    """Every overlap found, per source and eval set, and the rows the chosen action removes."""

    config: DecontamConfig
    rows: int
    eval_sets: dict[str, dict[str, Any]]
    sources: list[SourceOverlap]
    matches: list[Match]
    seconds: float = 0.0

    def flagged_sources(self) -> list[str]:
        return sorted({s.source for s in self.sources if s.flagged})

    def matched_rows(self) -> set[int]:
        return {m.row for m in self.matches}

    def rows_to_drop(self, sources_of_rows: Sequence[str]) -> set[int]:
        """Row indices the configured action removes (``sources_of_rows[i]``: row i's source)."""
        action = self.config.action
        if action == "report":
            return set()
        drop = self.matched_rows()
        if action == "drop_source":
            flagged = set(self.flagged_sources())
            drop |= {i for i, s in enumerate(sources_of_rows) if s in flagged}
        return drop

    def to_dict(self, *, limit: int | None = 200) -> dict[str, Any]:
        matches = sorted(self.matches, key=lambda m: (-m.score, m.row, m.eval_set, m.eval_id))
        shown = matches if limit is None else matches[:limit]
        return {
            "config": self.config.to_dict(),
            "rows": self.rows,
            "eval_sets": self.eval_sets,
            "sources": [s.to_dict() for s in self.sources],
            "flagged_sources": self.flagged_sources(),
            "matched_rows": len(self.matched_rows()),
            "matches": [{**asdict(m), "score": round(m.score, 4)} for m in shown],
            "matches_truncated": len(matches) - len(shown),
            "seconds": round(self.seconds, 3),
        }


def _batches(texts: Sequence[str], size: int) -> Iterable[tuple[int, Sequence[str]]]:
    for start in range(0, len(texts), size):
        yield start, texts[start : start + size]


def find_overlaps(
    texts: Sequence[str],
    index: NgramIndex,
    threshold: float = MATCH_THRESHOLD,
    *,
    batch_size: int = BATCH,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[tuple[int, int, int, float]]:
    """(row, eval set number, eval instance, score) for every overlapping pair, in row order.

    Batches of rows are tokenised and looked up on a thread pool: Arrow, numpy and pandas do the
    work with the GIL released, so the batches use every core.
    """
    workers = workers or min(4, os.cpu_count() or 1)

    def one(batch: tuple[int, Sequence[str]]) -> list[tuple[int, int, int, float]]:
        start, chunk = batch
        rows, sets, instances, scores = index.overlaps(tokenize(list(chunk)), threshold)
        return [
            (start + int(r), int(k), int(e), float(s))
            for r, k, e, s in zip(rows, sets, instances, scores, strict=True)
        ]

    out: list[tuple[int, int, int, float]] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found in pool.map(one, _batches(texts, batch_size)):
            out.extend(found)
            done = min(len(texts), done + batch_size)
            if progress:
                progress(done, len(texts))
    out.sort()
    return out


def decontaminate(
    texts: Sequence[str],
    sources: Sequence[str],
    eval_sets: Sequence[PromptSet],
    config: DecontamConfig | None = None,
    *,
    progress: Progress | None = None,
) -> DecontamReport:
    """Check training prompts (``texts``, each from ``sources[i]``) against eval sets.

    Returns every (row, eval instance) overlap above the threshold, per source and eval set how
    many eval instances its rows overlap, and which sources pass the flagging share.
    """
    import time

    config = (config or DecontamConfig()).validate()
    if len(texts) != len(sources):
        raise ValueError("texts and sources must have the same length")
    names = [s.name for s in eval_sets]
    if len(set(names)) != len(names):
        raise CuratorError(f"eval sets need distinct names, got {', '.join(names)}")
    started = time.perf_counter()
    index = NgramIndex(eval_sets, config.ngram)
    found = find_overlaps(texts, index, config.threshold, progress=progress)
    overlapped: dict[tuple[str, int], set[int]] = defaultdict(set)
    matched_rows: dict[tuple[str, int], set[int]] = defaultdict(set)
    matches = []
    for row, k, instance, score in found:
        source = sources[row]
        overlapped[(source, k)].add(instance)
        matched_rows[(source, k)].add(row)
        matches.append(Match(row, source, names[k], eval_sets[k].ids[instance], score))
    per_source = []
    for source in sorted(set(sources)):
        for k, prompt_set in enumerate(eval_sets):
            n_overlap = len(overlapped.get((source, k), ()))
            fraction = n_overlap / len(prompt_set) if len(prompt_set) else 0.0
            per_source.append(
                SourceOverlap(
                    source=source,
                    eval_set=names[k],
                    eval_instances=len(prompt_set),
                    overlapping=n_overlap,
                    rows=len(matched_rows.get((source, k), ())),
                    flagged=fraction > config.source_threshold,
                )
            )
    eval_info = {
        s.name: {"instances": len(s), "too_short": index.too_short(k), "origin": s.origin}
        for k, s in enumerate(eval_sets)
    }
    return DecontamReport(
        config=config,
        rows=len(texts),
        eval_sets=eval_info,
        sources=per_source,
        matches=matches,
        seconds=time.perf_counter() - started,
    )
