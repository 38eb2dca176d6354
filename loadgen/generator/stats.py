"""Latency histograms (HdrHistogram, microseconds) and the per-second series.

Recording straight into ``hdrh`` costs about 2 us a sample in pure Python, as much as a
sendto. The engine instead tallies each microsecond value in a plain dict (one increment, tens
of nanoseconds, and lossless: the exact values are kept), and ``Tally.flush`` folds the dict into
an HdrHistogram once per second. The figures are the same as recording each sample directly.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))


def merge(encoded: list[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total


class Tally:
    """Microsecond samples counted in a dict, folded into a histogram on ``flush``."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def flush(self) -> HdrHistogram:
        histogram = new_histogram()
        for value, count in self.counts.items():
            histogram.record_value(min(max(value, LOWEST_US), HIGHEST_US), count)
        self.counts = {}
        return histogram


def percentiles(histogram: HdrHistogram) -> dict[str, Any]:
    """min, mean, p50, p90, p99, p999, max in microseconds (None when nothing was recorded)."""
    if histogram.get_total_count() == 0:
        return {key: None for key in ("min", "mean", *PERCENTILES, "max")} | {"count": 0}
    figures: dict[str, Any] = {
        "min": histogram.get_min_value(),
        "mean": round(histogram.get_mean_value(), 1),
    }
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))  # one pass
    for key, percentile in PERCENTILES.items():
        figures[key] = values[percentile]
    figures["max"] = histogram.get_max_value()
    figures["count"] = histogram.get_total_count()
    return figures
