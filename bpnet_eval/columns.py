"""Per-region values derived from the report's columns (numpy only: shared by the summary and the figures)."""

import numpy as np


def predicted_total_logcounts(columns: dict, track_names) -> np.ndarray:
    """Predicted log counts of the whole region: the column itself, or ``ln(1 + sum_s (e^c_s - 1))``
    when the model predicts one log count per track."""
    if "predicted_logcounts" in columns:
        return columns["predicted_logcounts"]
    per_track = np.stack([columns[f"predicted_logcounts_{name}"] for name in track_names])
    return np.log1p(np.expm1(per_track).sum(axis=0))
