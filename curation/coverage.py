"""Coverage maps: where the prompts of several datasets sit, and how much they overlap.

Prompts are embedded with MiniLM (the routing encoder, its vectors cached in the workspace),
mapped to 2-D with UMAP and clustered with k-means, k chosen by the silhouette score. The
clusters are found in the embedding space by default, not on the 2-D map: on the real safety sets
(HarmBench, XSTest, WildJailbreak eval) UMAP put HarmBench's lyrics requests on an island of their
own and the map's silhouette then chose k = 2, one island against everything else, while the
embedding's silhouette chose 8 clusters that tell the benchmarks apart. Each
cluster is named by its top terms (class-based TF-IDF, as BERTopic does) or by the prompt tagger's
most common tags, and each source's share of each cluster shows what the sources cover together:
two safety benchmarks whose prompts fall in different clusters test different things (the
orthogonality analysis), two that share clusters largely test the same thing.
"""

from __future__ import annotations

import html
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from curation.decontam import PromptSet, load_prompt_set, user_text
from curation.embeddings import EmbeddingCache, Encoder, EncoderConfig
from curation.errors import CuratorError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from curation.store import Store

REDUCERS = ("umap", "pca")
CLUSTER_ON = ("map", "embedding")
GROUP_BY = ("dataset", "source", "subset")
NAME_DIMENSIONS = ("subject_of_expertise", "safety_concern")
_HOVER_CHARS = 160
_SILHOUETTE_SAMPLE = 3000

Progress = Callable[[str, float], None]


@dataclass
class CoverageConfig:
    """How the map is drawn; one definition for the CLI and the page."""

    per_source: int | None = field(
        default=500, metadata={"help": "Prompts sampled per source (all when empty)."}
    )
    k_min: int = field(default=2, metadata={"help": "Fewest clusters tried."})
    k_max: int = field(default=12, metadata={"help": "Most clusters tried."})
    k: int | None = field(
        default=None, metadata={"help": "Use exactly this many clusters (no silhouette search)."}
    )
    reducer: str = field(
        default="umap", metadata={"help": "umap, or pca (linear, faster, cruder)."}
    )
    cluster_on: str = field(
        default="embedding",
        metadata={"help": "embedding: cluster the MiniLM vectors; map: the 2-D points you see "
                          "(UMAP's islands make the silhouette favour very few clusters)."},
    )  # fmt: skip
    n_neighbors: int = field(default=15, metadata={"help": "UMAP neighbourhood size."})
    min_dist: float = field(default=0.1, metadata={"help": "UMAP minimum distance."})
    top_terms: int = field(default=4, metadata={"help": "Terms in a cluster's name."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, UMAP and k-means."})
    encoder: str | None = field(
        default=None, metadata={"help": "Sentence encoder (default: the embedded MiniLM)."}
    )
    max_length: int = field(
        default=128,
        metadata={"help": "Tokens embedded per prompt (MiniLM was trained on 128; a prompt's "
                          "topic shows in its start, and long jailbreaks encode twice as fast)."},
    )  # fmt: skip

    def validate(self) -> CoverageConfig:
        if self.reducer not in REDUCERS:
            raise CuratorError(
                f"reducer must be one of {', '.join(REDUCERS)}, not {self.reducer!r}"
            )
        if self.cluster_on not in CLUSTER_ON:
            raise CuratorError(
                f"cluster_on must be one of {', '.join(CLUSTER_ON)}, not {self.cluster_on!r}"
            )
        if not 2 <= self.k_min <= self.k_max:
            raise CuratorError(f"need 2 <= k_min <= k_max, got {self.k_min} and {self.k_max}")
        if self.k is not None and self.k < 2:
            raise CuratorError(f"k must be at least 2, got {self.k}")
        if self.per_source is not None and self.per_source < 1:
            raise CuratorError("per_source must be at least 1 (or empty for all prompts)")
        return self


# ---- the prompts ------------------------------------------------------------------------------


def coverage_prompts(
    store: Store | None,
    refs: Sequence[str],
    *,
    group_by: str = "dataset",
    field: str | None = None,
) -> list[PromptSet]:
    """One prompt set per source: each ref is a workspace dataset or a file; ``group_by`` splits
    a workspace dataset by its ``source`` or ``subset`` column (WildJailbreak types, say)."""
    if group_by not in GROUP_BY:
        raise CuratorError(f"group_by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    if not refs:
        raise CuratorError("name at least one dataset or file to map")
    sets: list[PromptSet] = []
    for ref in refs:
        if group_by != "dataset" and store is not None and store.find_dataset(ref):
            sets.extend(_grouped(store, ref, group_by))
        else:
            sets.append(load_prompt_set(store, ref, field=field))
    names = Counter(s.name for s in sets)
    if any(n > 1 for n in names.values()):
        clashes = ", ".join(sorted(n for n, c in names.items() if c > 1))
        raise CuratorError(f"two sources are both called {clashes}: map each only once")
    return sets


def _grouped(store: Store, dataset: str, column: str) -> list[PromptSet]:
    import json

    info = store.dataset(dataset)
    groups: dict[str, PromptSet] = {}
    rows = store.conn.execute(
        "SELECT uid, prompt, messages, source, subset FROM instances WHERE dataset_id = ? "
        "ORDER BY id",
        (info["id"],),
    )
    for uid, prompt, messages, source, subset in rows:
        value = (source if column == "source" else subset) or "(none)"
        name = f"{dataset}/{value}"
        group = groups.setdefault(name, PromptSet(name, [], [], origin=f"dataset {dataset}"))
        group.ids.append(str(uid))
        group.texts.append(user_text(prompt, json.loads(messages) if messages else None))
    return [groups[k] for k in sorted(groups)]


def sample_prompts(sets: Sequence[PromptSet], per_source: int | None, seed: int) -> list[PromptSet]:
    """At most ``per_source`` prompts of each set, drawn with the seed (in their first order)."""
    if per_source is None:
        return list(sets)
    out = []
    for k, s in enumerate(sets):
        if len(s) <= per_source:
            out.append(s)
            continue
        rng = np.random.default_rng([seed, k])
        picked = sorted(rng.choice(len(s), size=per_source, replace=False).tolist())
        out.append(
            PromptSet(s.name, [s.ids[i] for i in picked], [s.texts[i] for i in picked], s.origin)
        )
    return out


# ---- the map ---------------------------------------------------------------------------------


@dataclass
class CoverageMap:
    """The prompts as 2-D points with their source and cluster, and what the clusters are."""

    points: pd.DataFrame  # source, id, text, x, y, cluster
    k: int
    silhouette: float
    silhouettes: dict[int, float]
    names: dict[int, str]
    terms: dict[int, list[str]]
    config: CoverageConfig

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(self.points["source"]))

    def source_shares(self) -> pd.DataFrame:
        """Rows: sources; columns: clusters; each row sums to 1 (where a source's prompts go)."""
        table = pd.crosstab(self.points["source"], self.points["cluster"], normalize="index")
        return table.reindex(index=self.sources, columns=range(self.k), fill_value=0.0)

    def cluster_shares(self) -> pd.DataFrame:
        """Rows: clusters; columns: sources; each row sums to 1 (who makes up a cluster)."""
        table = pd.crosstab(self.points["cluster"], self.points["source"], normalize="index")
        return table.reindex(index=range(self.k), columns=self.sources, fill_value=0.0)

    def overlap(self) -> pd.DataFrame:
        """Per pair of sources, the overlap of their cluster distributions (the sum over clusters
        of the smaller share): 0 when they share no cluster (orthogonal), 1 when identical."""
        shares = self.source_shares().to_numpy()
        n = len(shares)
        values = np.array(
            [[np.minimum(shares[i], shares[j]).sum() for j in range(n)] for i in range(n)]
        )
        return pd.DataFrame(values, index=self.sources, columns=self.sources)

    def clusters(self) -> pd.DataFrame:
        """One row per cluster: its name, size and largest source."""
        sizes = self.points["cluster"].value_counts()
        mix = self.cluster_shares()
        return pd.DataFrame(
            [
                {
                    "cluster": c,
                    "name": self.names.get(c, ""),
                    "prompts": int(sizes.get(c, 0)),
                    "largest_source": mix.loc[c].idxmax() if len(mix.columns) else "",
                    "largest_share": float(mix.loc[c].max()) if len(mix.columns) else 0.0,
                }
                for c in range(self.k)
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        shares = self.source_shares()
        return {
            "prompts": len(self.points),
            "sources": {s: int((self.points["source"] == s).sum()) for s in self.sources},
            "k": self.k,
            "silhouette": round(self.silhouette, 4),
            "silhouettes": {str(k): round(v, 4) for k, v in self.silhouettes.items()},
            "clusters": self.clusters().to_dict(orient="records"),
            "cluster_shares": {
                str(c): {s: round(float(v), 4) for s, v in row.items()}
                for c, row in self.cluster_shares().iterrows()
            },
            "source_shares": {
                s: {str(c): round(float(v), 4) for c, v in shares.loc[s].items()}
                for s in self.sources
            },
            "overlap": {
                s: {t: round(float(v), 4) for t, v in row.items()}
                for s, row in self.overlap().iterrows()
            },
            "config": asdict(self.config),
        }


def embed_prompts(
    texts: Sequence[str],
    *,
    encoder: str | None = None,
    max_length: int = 128,
    workspace: Any = None,
) -> np.ndarray:
    """Unit-length MiniLM vectors of prompts, cached in the workspace when one is given."""
    model = Encoder(EncoderConfig(encoder=encoder, max_length=max_length))
    if workspace is None:
        return model.encode(list(texts)).vectors
    return EmbeddingCache.for_workspace(workspace).embed(model, "coverage-prompts", list(texts))


def reduce_2d(vectors: np.ndarray, config: CoverageConfig) -> np.ndarray:
    """2-D coordinates of the vectors (UMAP on cosine distance, or PCA)."""
    n = len(vectors)
    if n < 3:
        raise CuratorError(f"a coverage map needs at least 3 prompts, got {n}")
    if config.reducer == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=config.seed).fit_transform(vectors)
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": wanted, for a seed
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=max(2, min(config.n_neighbors, n - 1)),
            min_dist=config.min_dist,
            metric="cosine",
            random_state=config.seed,
            init="spectral" if n > 10 else "random",
        )
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float64)


def choose_k(
    points: np.ndarray, config: CoverageConfig
) -> tuple[int, np.ndarray, dict[int, float]]:
    """k-means for each k in range (or ``config.k`` alone), keeping the best silhouette score.

    k-means runs on one thread: on a busy machine its default thread pool made 11 small fits
    take 20 s instead of 0.2 s (the same collapse LAB-NOTES records for LightGBM).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    n = len(points)
    low, high = (config.k, config.k) if config.k else (config.k_min, min(config.k_max, n - 1))
    if high < low or low > n - 1:
        raise CuratorError(f"{n} prompts are too few for {low} clusters")
    scores: dict[int, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    sample = _SILHOUETTE_SAMPLE if n > _SILHOUETTE_SAMPLE else None
    for k in range(low, high + 1):
        with threadpool_limits(1):
            labels = KMeans(n_clusters=k, n_init=10, random_state=config.seed).fit_predict(points)
        if len(set(labels.tolist())) < 2:
            continue
        score = float(
            silhouette_score(points, labels, sample_size=sample, random_state=config.seed)
        )
        scores[k] = score
        if best is None or score > best[0] + 1e-12:
            best = (score, k, labels)
    if best is None:
        raise CuratorError("the prompts do not separate into clusters (are they all identical?)")
    return best[1], best[2], scores


def ctfidf_terms(
    texts: Sequence[str], labels: Sequence[int], k: int, top: int
) -> dict[int, list[str]]:
    """Each cluster's top terms by class-based TF-IDF: a term's frequency in the cluster
    (normalised by the cluster's size) times log(1 + average words per cluster / the term's
    frequency over all clusters), so words common everywhere do not name any cluster."""
    from sklearn.feature_extraction.text import CountVectorizer

    docs = [
        " ".join(t for t, c in zip(texts, labels, strict=True) if c == cluster)
        for cluster in range(k)
    ]
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b")
        counts = vectorizer.fit_transform(docs).toarray().astype(float)
    except ValueError:  # no usable words at all
        return {c: [] for c in range(k)}
    words = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    average = counts.sum() / k
    idf = np.log(1.0 + average / np.maximum(counts.sum(axis=0), 1.0))
    scores = tf * idf
    out = {}
    for c in range(k):
        order = np.argsort(-scores[c], kind="stable")
        out[c] = [str(words[i]) for i in order[:top] if scores[c, i] > 0]
    return out


def coverage_map(
    sets: Sequence[PromptSet],
    config: CoverageConfig | None = None,
    *,
    vectors: np.ndarray | None = None,
    workspace: Any = None,
    progress: Progress | None = None,
) -> CoverageMap:
    """Embed (unless ``vectors`` are given, one row per prompt in set order), map, cluster and
    name the prompts of several sources."""
    config = (config or CoverageConfig()).validate()
    progress = progress or (lambda message, fraction: None)
    sets = sample_prompts(sets, config.per_source, config.seed)
    texts = [t for s in sets for t in s.texts]
    if vectors is None:
        progress("embedding prompts", 0.1)
        vectors = embed_prompts(
            texts, encoder=config.encoder, max_length=config.max_length, workspace=workspace
        )
    if len(vectors) != len(texts):
        raise ValueError("one vector per prompt is needed")
    progress("mapping to 2-D", 0.5)
    xy = reduce_2d(np.asarray(vectors, dtype=np.float32), config)
    progress("clustering", 0.8)
    k, labels, scores = choose_k(xy if config.cluster_on == "map" else vectors, config)
    terms = ctfidf_terms(texts, labels.tolist(), k, config.top_terms)
    points = pd.DataFrame(
        {
            "source": [s.name for s in sets for _ in s.texts],
            "id": [i for s in sets for i in s.ids],
            "text": texts,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "cluster": labels.astype(int),
        }
    )
    names = {c: ", ".join(words) or f"cluster {c}" for c, words in terms.items()}
    progress("done", 1.0)
    return CoverageMap(points, k, scores[k], scores, names, terms, config)


def name_by_tags(
    cmap: CoverageMap,
    tagger: Any,
    *,
    dimensions: Sequence[str] = NAME_DIMENSIONS,
    per_cluster: int = 20,
    vectors: np.ndarray | None = None,
) -> dict[int, str]:
    """Name each cluster by the prompt tagger's most common value per dimension over (up to)
    ``per_cluster`` of its prompts, e.g. "chemistry / high"; replaces ``cmap.names``.

    Any tagger of :mod:`routing.taggers` works: the embedding tagger in a moment, the LM tagger
    (as the paper tagged prompts) at a few prompts a second on a CPU, hence the sample.
    """
    picked: list[int] = []
    for c in range(cmap.k):
        rows = np.flatnonzero(cmap.points["cluster"].to_numpy() == c)
        picked.extend(rows[:per_cluster].tolist())
    texts = [cmap.points["text"].iloc[i] for i in picked]
    tags = tagger.tag(texts, vectors=None if vectors is None else vectors[picked])
    names = {}
    for c in range(cmap.k):
        parts = []
        members = [j for j, i in enumerate(picked) if cmap.points["cluster"].iloc[i] == c]
        for dim in dimensions:
            if dim in tags and members:
                values = Counter(tags[dim][0][j] for j in members)
                parts.append(values.most_common(1)[0][0].replace("_", " "))
        names[c] = " / ".join(parts) or cmap.names.get(c, f"cluster {c}")
    cmap.names = names
    return names


# ---- pictures --------------------------------------------------------------------------------


def _hover(text: str) -> str:
    """Prompt text for a hover label: shortened and HTML-escaped (plotly renders some tags)."""
    short = text if len(text) <= _HOVER_CHARS else text[: _HOVER_CHARS - 1] + "…"
    return html.escape(" ".join(short.split()))


def scatter_figure(cmap: CoverageMap, color: str = "source") -> go.Figure:
    """The map as a plotly scatter, coloured by source or by cluster."""
    import plotly.graph_objects as go

    if color not in ("source", "cluster"):
        raise CuratorError(f"colour by source or cluster, not {color!r}")
    points = cmap.points
    fig = go.Figure()
    groups = cmap.sources if color == "source" else list(range(cmap.k))
    for group in groups:
        part = points[points[color] == group]
        label = html.escape(str(group)) if color == "source" else html.escape(
            f"{group}: {cmap.names.get(group, '')}"
        )  # fmt: skip
        fig.add_trace(
            go.Scattergl(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=label,
                marker={"size": 6, "opacity": 0.75},
                text=[_hover(t) for t in part["text"]],
                customdata=np.stack(
                    [part["source"].map(html.escape), part["cluster"].astype(str)], axis=-1
                ),
                hovertemplate="%{customdata[0]} · cluster %{customdata[1]}<br>%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{len(points):,} prompts, {cmap.k} clusters (silhouette {cmap.silhouette:.3f})",
        xaxis={"showticklabels": False, "title": ""},
        yaxis={"showticklabels": False, "title": ""},
        legend={"title": color},
        height=600,
        margin={"t": 50},
    )
    return fig


def shares_figure(cmap: CoverageMap) -> go.Figure:
    """Each source's share of each cluster, as a heatmap (each cluster's row sums to 1)."""
    import plotly.graph_objects as go

    shares = cmap.cluster_shares()
    labels = [html.escape(f"{c}: {cmap.names.get(c, '')}") for c in shares.index]
    fig = go.Figure(
        go.Heatmap(
            z=shares.to_numpy(),
            x=[html.escape(s) for s in shares.columns],
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            text=np.vectorize(lambda v: f"{v:.0%}")(shares.to_numpy()),
            texttemplate="%{text}",
            hovertemplate="%{y} · %{x}: %{z:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Each source's share of each cluster",
        height=max(260, 40 * len(shares) + 140),
        margin={"t": 50},
    )
    return fig


def write_html(cmap: CoverageMap, path: str | Path, *, color: str = "source") -> Path:
    """A self-contained HTML page (plotly.js inlined: it opens offline) with the map, the share
    heatmap and the clusters' names."""
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CuratorError(f"cannot create {target.parent}: {exc.strerror}") from exc
    scatter = scatter_figure(cmap, color).to_html(full_html=False, include_plotlyjs=True)
    heat = shares_figure(cmap).to_html(full_html=False, include_plotlyjs=False)
    rows = "".join(
        f"<tr><td>{r.cluster}</td><td>{html.escape(str(r.name))}</td><td>{r.prompts}</td>"
        f"<td>{html.escape(str(r.largest_source))}</td><td>{r.largest_share:.0%}</td></tr>"
        for r in cmap.clusters().itertuples()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Coverage map</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>"
        f"<h1>Coverage map</h1><p>{len(cmap.points):,} prompts from "
        f"{html.escape(', '.join(cmap.sources))}; k = {cmap.k} chosen by silhouette "
        f"({cmap.silhouette:.3f}).</p>{scatter}{heat}"
        "<h2>Clusters</h2><table><tr><th>cluster</th><th>name</th><th>prompts</th>"
        f"<th>largest source</th><th>its share</th></tr>{rows}</table></body></html>"
    )
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CuratorError(f"cannot write {target}: {exc.strerror}") from exc
    return target


def silhouette_note(score: float) -> str:
    """A curator's reading of a silhouette score."""
    if math.isnan(score):
        return "undefined"
    if score >= 0.5:
        return "well separated"
    if score >= 0.25:
        return "some structure"
    return "weak structure"
