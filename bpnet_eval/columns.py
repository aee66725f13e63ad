"""Per-region values derived from the report's columns (numpy only: shared by the summary and the figures)."""

import numpy as np


def predicted_total_logcounts(columns: dict, track_names, count_target: str = "log1p") -> np.ndarray:
    """Predicted log counts of the whole region: the column itself, or, when the model predicts one log count
    per track, ``ln(1 + sum_s (e^c_s - 1))`` (count target ``ln(1 + K)``) or ``ln(sum_s e^c_s)`` (``ln K``)."""
    if "predicted_logcounts" in columns:
        return columns["predicted_logcounts"]
    per_track = np.stack([columns[f"predicted_logcounts_{name}"] for name in track_names])
    if count_target == "log":
        return np.logaddexp.reduce(per_track, axis=0)
    return np.log1p(np.expm1(per_track).sum(axis=0))


def ranked_rows(columns: dict) -> np.ndarray:
    """Rows by profile MNLL, lowest first, among the regions with at least the median observed total of the
    regions with reads (MNLL grows with the reads, so over all regions the "best" would merely be the
    emptiest); empty when no region has reads."""
    mnll = np.asarray(columns["profile_mnll"], dtype=np.float64)
    totals = np.asarray(columns["observed_counts"], dtype=np.float64)
    with_reads = np.isfinite(mnll) & (totals > 0)
    if not with_reads.any():
        return np.zeros(0, dtype=np.int64)
    candidates = np.flatnonzero(with_reads & (totals >= np.median(totals[with_reads])))
    return candidates[np.argsort(mnll[candidates], kind="stable")]
