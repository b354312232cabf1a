"""Mixtures: SFT, safety and preference training sets specified as data, built reproducibly,
stored as versions, compared and exported.

A spec (YAML or JSON) follows open-instruct's ``dataset_mixer``: per source a fraction (a number
with a decimal point; above 1.0 upsamples) or an absolute count, a seed and filters, optionally
in stages (a mixture per training stage, as OLMo 2's late annealing mix). Building a spec reads
the workspace's datasets, removes duplicates (:mod:`curation.dedup`) and eval overlaps
(:mod:`curation.decontam`), draws the rows and writes a version folder
``mixtures/<name>-v<version>/``:

- ``data.jsonl``: one row per example, the canonical bytes the content hash covers. SFT and safety
  rows are ``{"messages": [{"role", "content"}...], "source", "instance_id"}`` (safety mixtures
  add ``"safety_type"``, null on their general rows); preference rows are ``{"prompt",
  "messages" (the conversation, or null), "chosen", "rejected", "source", "instance_id"}``.
  Stages follow each other in the file; ``manifest["stages"]`` gives each one's row range.
- ``manifest.json``: sources, counts drawn, seed, filters, dedup and decontamination reports and
  the content hash (also stored in the ``mixtures`` table);
- ``hf/``: the same rows as a saved Hugging Face dataset;
- ``reports/``: every dropped duplicate and every eval overlap, one JSON object a line.

The same spec over the same data rebuilds the same bytes: pools are read in instance order,
every draw has its own seed derived from the spec's seed, and rows are serialised canonically.

One concern a module: ``spec`` (the spec as data), ``spec_reader`` (reading a spec file),
``pools`` (what each source could contribute), ``draw`` (cleaning and drawing one stage),
``formats`` (JSONL, Arrow and HF writing), ``build``, ``versions`` (storing and finding versions),
``read`` (a version's rows, hash-checked), ``diff``, ``export`` and ``preview``. This module only
re-exports what the rest of the code uses.
"""

from curation.mixtures.build import BuildResult, build_mixture
from curation.mixtures.diff import diff_mixtures
from curation.mixtures.export import export_mixture
from curation.mixtures.formats import DATA_FILE, FORMATS
from curation.mixtures.preview import manifest_tables, preview
from curation.mixtures.read import iter_mixture_rows, mixture_rows
from curation.mixtures.spec import KINDS, SOURCE_KINDS
from curation.mixtures.spec_reader import load_spec, parse_spec
from curation.mixtures.versions import list_mixtures, resolve_mixture
from curation.pairs import LABEL_SOURCES

__all__ = [
    "BuildResult",
    "DATA_FILE",
    "FORMATS",
    "KINDS",
    "LABEL_SOURCES",
    "SOURCE_KINDS",
    "build_mixture",
    "diff_mixtures",
    "export_mixture",
    "iter_mixture_rows",
    "list_mixtures",
    "load_spec",
    "manifest_tables",
    "mixture_rows",
    "parse_spec",
    "preview",
    "resolve_mixture",
]
