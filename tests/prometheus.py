"""Reading a /metrics answer the way Prometheus does: prometheus_client's own parser."""

from __future__ import annotations

from typing import Final

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]

MISSING: Final = object()


class Scrape:
    """Every sample of one scrape, by sample name and labels; and each family's type."""

    def __init__(self, text: str) -> None:
        self.samples: dict[Key, float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in self.samples, f"sample {key} given twice"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; a missing one fails the test."""
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"no sample {key}; have {sorted(self.names())}"
        return self.samples[key]

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Every sample ``name`` by the value of its one label ``label``."""
        found: dict[str, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == name:
                assert [key for key, _ in labels] == [label], labels
                found[labels[0][1]] = value
        return found

    def matching(self, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample ``name`` whose labels include ``labels``, by its full label set."""
        return {
            sample_labels: value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        }

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}
