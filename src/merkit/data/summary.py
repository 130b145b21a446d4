"""What `merkit inspect` reports about a dataset, as plain data (also written as JSON).

Counting is done on loaded SampleSets, so the figures are exactly what training would see:
samples, subjects, classes under every taxonomy the dataset offers, apex provenance, and the
loader's list of skipped items and notes.
"""

from __future__ import annotations

import inspect
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from merkit.data.base import SampleSet
from merkit.data.registry import get_dataset_info, load_dataset
from merkit.errors import ConfigError


def by_source(sample_set: SampleSet) -> dict[str, dict[str, object]]:
    """Samples, subjects and class counts per source dataset (composites mix several)."""
    groups: dict[str, list] = defaultdict(list)
    for sample in sample_set:
        groups[sample.dataset].append(sample)
    table = {}
    for source, samples in groups.items():
        counts = Counter(sample_set.class_names[s.label] for s in samples)
        table[source] = {
            "samples": len(samples),
            "subjects": len({s.subject for s in samples}),
            "classes": {c: counts.get(c, 0) for c in sample_set.class_names},
        }
    return table


def summarize(sample_set: SampleSet) -> dict[str, object]:
    """The figures of one loaded SampleSet."""
    return {
        "dataset": sample_set.name,
        "root": str(sample_set.root),
        "taxonomy": sample_set.taxonomy,
        "samples": len(sample_set),
        "subjects": len(sample_set.subjects),
        "classes": sample_set.class_counts(),
        "by_source": by_source(sample_set),
        "apex": sample_set.apex_counts(),
        "skipped": [{"item": s.item, "reason": s.reason} for s in sample_set.skipped],
        "notes": list(sample_set.notes),
        "fingerprint": sample_set.fingerprint(),
    }


def inspect_dataset(
    name: str, root: str | Path, taxonomy: str | None = None, **options
) -> dict[str, object]:
    """Summary of dataset `name` under `taxonomy`, plus class counts under its other taxonomies."""
    info = get_dataset_info(name)
    main = load_dataset(name, root, taxonomy, **options)
    summary = {"title": info.title, **summarize(main)}
    per_taxonomy = {main.taxonomy: main.class_counts()}
    for other in info.taxonomies:
        if other not in per_taxonomy:
            per_taxonomy[other] = load_dataset(name, root, other, **options).class_counts()
    summary["classes_per_taxonomy"] = per_taxonomy
    return summary


def parse_options(name: str, pairs: Sequence[str]) -> dict[str, str]:
    """Loader options from `KEY=VALUE` strings, checked against the loader's keyword arguments."""
    parameters = inspect.signature(get_dataset_info(name).loader).parameters
    known = [p.name for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            allowed = ", ".join(f"{k}=..." for k in known) or "none"
            raise ConfigError(f"option {pair!r} is not valid for {name} (options: {allowed})")
        options[key] = value
    return options
