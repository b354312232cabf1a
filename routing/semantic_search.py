"""Search a dataset by meaning: a query, or a pair ("more like this"), against its prompts.

The prompts' sentence vectors are the ones routing's features already cache (the same encoder,
the cache keyed by dataset and text), so after `curator features` a search encodes only the
query; before, the first search encodes the dataset once, with progress, and caches it. Scores
are cosine similarities of unit vectors, so a dot product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.embeddings import EmbeddingCache, Encoder, EncoderConfig, Progress
from curation.errors import CuratorError
from curation.store import Store

DEFAULT_HITS = 50


@dataclass(frozen=True)
class PromptIndex:
    """A dataset's instance ids and their prompts' unit vectors, in id order."""

    instance_ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, dim) float32
    encoder: Encoder

    @classmethod
    def build(
        cls,
        store: Store,
        dataset: str,
        *,
        encoder: Encoder | None = None,
        progress: Progress | None = None,
    ) -> PromptIndex:
        ds = store.dataset(dataset)
        rows = store.conn.execute(
            "SELECT id, prompt FROM instances WHERE dataset_id = ? ORDER BY id", (ds["id"],)
        ).fetchall()
        if not rows:
            raise CuratorError(f"{dataset!r} has no instances to search")
        encoder = encoder or Encoder(EncoderConfig())
        prompts = [r[1] or "" for r in rows]
        if store.workspace is not None:
            vectors = EmbeddingCache.for_workspace(store.workspace).embed(
                encoder, dataset, prompts, progress=progress
            )
        else:
            vectors = encoder.encode(prompts, progress=progress).vectors
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return cls(ids, np.asarray(vectors, dtype=np.float32), encoder)

    def search(self, query: str, *, k: int = DEFAULT_HITS) -> list[tuple[int, float]]:
        """The ``k`` instances whose prompts mean most nearly what ``query`` says, best first."""
        if not query.strip():
            return []
        vector = self.encoder.encode([query]).vectors[0]
        return self._nearest(vector, k)

    def more_like(self, instance_id: int, *, k: int = DEFAULT_HITS) -> list[tuple[int, float]]:
        """The ``k`` other instances whose prompts are nearest to this one's, best first."""
        where = np.flatnonzero(self.instance_ids == instance_id)
        if not where.size:
            raise CuratorError(f"instance {instance_id} is not in this dataset")
        hits = self._nearest(self.vectors[where[0]], k + 1)
        return [(i, s) for i, s in hits if i != instance_id][:k]

    def _nearest(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores = self.vectors @ vector
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        # ties broken by id, so the same search always lists the same order
        order = top[np.lexsort((self.instance_ids[top], -scores[top]))]
        return [(int(self.instance_ids[i]), float(scores[i])) for i in order]
