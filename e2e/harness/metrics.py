"""The operator's Prometheus metrics, read with prometheus_client's own text parser."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

Metrics = list[Sample]
"""Every sample of one scrape; names are sample names (`x_total`, `x_count`, `x_bucket`)."""


def parse(text: str) -> Metrics:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: Metrics, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include labels."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def by_label(samples: Metrics, name: str, label: str) -> Counter[str]:
    """A metric's samples summed by the value of one label (samples without it left out)."""
    found: Counter[str] = Counter()
    for sample in samples:
        if sample.name == name and label in sample.labels:
            found[sample.labels[label]] += int(sample.value)
    return found
