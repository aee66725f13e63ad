"""The example regions a report shows: chosen from the per-region columns, read again from the sources,
with the predicted profile on the counts scale. Computed by the pipeline, carried in the result, so the
report draws them without reading or computing anything."""

from typing import Callable, Optional

from .columns import ranked_rows
from .regions import Regions, region_label


def example_rows(columns: dict) -> list:
    """``(label, row)`` of the best, median and worst region of ``ranked_rows``."""
    ranked = ranked_rows(columns)
    if not ranked.size:
        return []
    picks = [("best (lowest MNLL)", ranked[0]), ("median MNLL", ranked[(ranked.size - 1) // 2]),
             ("worst (highest MNLL)", ranked[-1])]
    seen, out = set(), []
    for label, row in picks:
        if int(row) not in seen:
            seen.add(int(row))
            out.append((label, int(row)))
    return out


def example_regions(columns: dict, regions: Regions, read_rows: Callable) -> Optional[dict]:
    """The regions of ``example_rows``, read by ``read_rows(rows) -> (logits, logcounts, observed)``, with their
    labels and predicted profiles (``seed.predicted_profile``); None when no region has reads."""
    from .seed import predicted_profile

    picks = example_rows(columns)
    if not picks:
        return None
    rows = [row for _, row in picks]
    logits, logcounts, observed = read_rows(rows)
    return {"picks": picks, "labels": [region_label(regions, row) for row in rows], "observed": observed,
            "predicted": predicted_profile(logits, logcounts)}
