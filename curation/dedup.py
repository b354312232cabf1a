"""Deduplication of mixture rows: exact (a hash of the normalised text) and near-duplicate
(MinHash LSH over word shingles, through ``datasketch``), within and across sources.

Rows are visited in the order given (a mixture passes its sources in spec order, each in instance
order) and the first of a group of duplicates is kept, so which row survives is deterministic and
a curator can predict it: put the source you trust most first. Every dropped row is reported with
the row it duplicates, the reason and, for near-duplicates, the estimated Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from curation.errors import CuratorError

DEDUP_ON = ("example", "prompt")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)

Progress = Callable[[int, int], None]


@dataclass
class DedupConfig:
    """What counts as a duplicate; one definition for spec files, the CLI and the page."""

    exact: bool = field(
        default=True,
        metadata={"help": "Drop rows whose normalised text (case, spacing, punctuation folded) "
                          "equals an earlier row's."},
    )  # fmt: skip
    near: bool = field(
        default=True,
        metadata={"help": "Drop rows whose MinHash-estimated Jaccard similarity to an earlier row "
                          "reaches the threshold."},
    )  # fmt: skip
    threshold: float = field(
        default=0.8, metadata={"help": "Jaccard similarity (of word shingles) that makes a near "
                                       "duplicate."}
    )  # fmt: skip
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (precision)."})
    shingle: int = field(default=5, metadata={"help": "Words per shingle."})
    on: str = field(
        default="example",
        metadata={
            "help": "example: the whole row (prompt and responses); prompt: user turns only."
        },
    )

    def validate(self) -> DedupConfig:
        if not 0.0 < self.threshold <= 1.0:
            raise CuratorError(f"dedup threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 16:
            raise CuratorError(f"dedup num_perm must be at least 16, got {self.num_perm}")
        if self.shingle < 1:
            raise CuratorError(f"dedup shingle must be at least 1 word, got {self.shingle}")
        if self.on not in DEDUP_ON:
            raise CuratorError(f"dedup on must be one of {', '.join(DEDUP_ON)}, not {self.on!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Dropped:
    """One row left out: its index, the earlier row it repeats, why, and how similar they are."""

    index: int
    kept: int
    reason: str  # "exact" or "near"
    similarity: float


@dataclass
class DedupResult:
    """Which rows survive, and a record of every row dropped."""

    keep: list[bool]
    dropped: list[Dropped]
    config: DedupConfig

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)

    def report(
        self, groups: Sequence[str], ids: Sequence[Any] | None = None, *, limit: int = 200
    ) -> dict[str, Any]:
        """A JSON-ready report: counts by group and reason (within a group or across groups) and
        the first ``limit`` drops, each naming both rows by group and id."""
        counts: Counter[tuple[str, str, str]] = Counter()
        examples = []
        for item in self.dropped:
            where = "within" if groups[item.index] == groups[item.kept] else "across"
            counts[(groups[item.index], item.reason, where)] += 1
            if len(examples) < limit:
                examples.append(
                    {
                        "source": groups[item.index],
                        "id": None if ids is None else ids[item.index],
                        "reason": item.reason,
                        "duplicate_of_source": groups[item.kept],
                        "duplicate_of_id": None if ids is None else ids[item.kept],
                        "similarity": round(item.similarity, 4),
                    }
                )
        by_source: dict[str, dict[str, int]] = {}
        for (group, reason, where), n in sorted(counts.items()):
            entry = by_source.setdefault(group, {"exact": 0, "near": 0, "within": 0, "across": 0})
            entry[reason] += n
            entry[where] += n
        return {
            "config": self.config.to_dict(),
            "rows": len(self.keep),
            "dropped": self.n_dropped,
            "by_source": by_source,
            "examples": examples,
            "examples_truncated": max(0, self.n_dropped - len(examples)),
        }


def normalise(text: str) -> str:
    """The text exact dedup compares: Unicode-folded, lower-cased, punctuation and spacing
    collapsed, so copies that differ only in formatting are caught."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def text_hash(text: str) -> str:
    """A short, stable digest of a normalised text (the exact-dedup key)."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).hexdigest()


def shingles(text: str, size: int) -> list[bytes]:
    """Word ``size``-grams of the normalised text; a text shorter than that is one shingle."""
    words = normalise(text).split()
    if len(words) <= size:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)]


def find_duplicates(
    texts: Sequence[str], config: DedupConfig | None = None, *, progress: Progress | None = None
) -> DedupResult:
    """Mark every text that repeats an earlier one (exactly, or nearly when ``config.near``).

    Near duplicates are found with MinHash LSH (candidates sharing a band) and confirmed by the
    MinHash estimate of their Jaccard similarity, since LSH alone lets some dissimilar pairs
    through. A row is compared only with rows kept so far, so a chain of small edits does not
    drop rows that are far from everything kept.
    """
    config = (config or DedupConfig()).validate()
    keep = [True] * len(texts)
    dropped: list[Dropped] = []
    if config.exact:
        first: dict[str, int] = {}
        for i, text in enumerate(texts):
            key = text_hash(text)
            if key in first:
                keep[i] = False
                dropped.append(Dropped(i, first[key], "exact", 1.0))
            else:
                first[key] = i
    if config.near:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        survivors = [i for i, k in enumerate(keep) if k]
        hashes = MinHash.bulk(
            (shingles(texts[i], config.shingle) for i in survivors), num_perm=config.num_perm
        )
        for done, (i, mh) in enumerate(zip(survivors, hashes, strict=True), start=1):
            best, best_sim = -1, 0.0
            for candidate in lsh.query(mh):
                sim = float(mh.jaccard(hashes[candidate]))
                # the earliest kept row among equally similar ones, for a stable report
                if sim >= config.threshold and (
                    sim > best_sim or (sim == best_sim and survivors[candidate] < best)
                ):
                    best, best_sim = survivors[candidate], sim
            if best >= 0:
                keep[i] = False
                dropped.append(Dropped(i, best, "near", best_sim))
            else:
                lsh.insert(done - 1, mh)
            if progress and (done % 1000 == 0 or done == len(survivors)):
                progress(done, len(survivors))
    dropped.sort(key=lambda d: d.index)
    return DedupResult(keep, dropped, config)
