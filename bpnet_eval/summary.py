"""Per-region columns → summary statistics over regions (and region groups)."""

from typing import Optional

import numpy as np

from .columns import predicted_total_logcounts
from .metrics.count_summary import count_metrics

STATISTICS = ("mean", "std", "min", "q1", "median", "q3", "max")


def column_statistics(values: np.ndarray) -> dict:
    """Mean, spread and quartiles over the defined (finite) values; ``n_undefined`` counts the rest."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[np.isfinite(values)]
    stats = {"n": int(defined.size), "n_undefined": int(values.size - defined.size)}
    if defined.size == 0:
        return {**stats, **{name: None for name in STATISTICS}}
    q1, median, q3 = np.quantile(defined, [0.25, 0.5, 0.75])
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(defined.mean()), float(defined.std())
    if not (np.isfinite(mean) and np.isfinite(std)):  # finite values whose sum or squares overflow: scaled
        scale = float(np.abs(defined).max())
        mean, std = scale * float((defined / scale).mean()), scale * float((defined / scale).std())
    return {**stats, "mean": mean, "std": std, "min": float(defined.min()),
            "q1": float(q1), "median": float(median), "q3": float(q3), "max": float(defined.max())}


def group_summary(columns: dict, rows: Optional[np.ndarray], track_names, count_options: Optional[dict] = None) -> dict:
    """Statistics of every per-region column and the across-region count metrics, over ``rows``.

    ``count_options`` are ``count_metrics``' ``names``, ``ties`` and ``target``.
    """

    pick = (lambda v: v) if rows is None else (lambda v: v[rows])
    count_options = count_options or {}
    with np.errstate(over="ignore", invalid="ignore"):  # e^c of a huge c: inf, then null with a warning
        total_logcounts = predicted_total_logcounts(columns, track_names, count_options.get("target", "log1p"))
    summary = {"n_regions": int(len(pick(columns["observed_counts"]))),
               "metrics": {name: column_statistics(pick(v)) for name, v in columns.items()},
               "counts": count_metrics(pick(total_logcounts), pick(columns["observed_counts"]), **count_options)}
    if "predicted_logcounts" not in columns:
        summary["counts_per_track"] = {
            name: count_metrics(pick(columns[f"predicted_logcounts_{name}"]),
                                pick(columns[f"observed_counts_{name}"]), **count_options)
            for name in track_names}
    return summary


def summarize(columns: dict, peak: Optional[np.ndarray], settings: dict, inputs: dict, groupings=()) -> dict:
    """The report's summary: every column over all regions, per group where regions carry peak labels, and per
    group of each grouping (``groups.Grouping`` over the same rows as ``columns``) in ``region_groups``."""
    track_names = settings["track_names"]
    plan = settings.get("metrics", {})
    count_options = {"names": tuple(plan["counts"]), "ties": plan["count_spearman_ties"],
                     "target": plan.get("count_target", "log1p")} if plan else {}
    summary = {"n_regions": int(len(columns["observed_counts"])),
               "count_loss_weight": settings["count_loss_weight"]}
    summary.update({k: v for k, v in group_summary(columns, None, track_names, count_options).items()
                    if k != "n_regions"})
    if peak is not None:
        summary["groups"] = {"peaks": group_summary(columns, peak, track_names, count_options),
                             "nonpeaks": group_summary(columns, ~peak, track_names, count_options)}
    if groupings:
        summary["region_groups"] = {
            grouping.name: {**grouping.describe(),
                            "groups": {label: group_summary(columns, grouping.member[:, k], track_names, count_options)
                                       for k, label in enumerate(grouping.labels)}}
            for grouping in groupings}
    summary["settings"] = settings
    summary["inputs"] = inputs
    return summary


def drop_nonfinite(summary: dict) -> list:
    """Replace every non-finite number in ``summary`` (nested dicts and lists) by None, in place: JSON has no
    inf or NaN, and ``summary.json`` writes null for an undefined value. Returns a warning for each number
    replaced (a statistic across regions that overflowed although every per-region value is finite)."""
    replaced = []

    def clean(value, path):
        if isinstance(value, dict):
            for key in value:
                value[key] = clean(value[key], f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            value[:] = [clean(item, f"{path}[{k}]") for k, item in enumerate(value)]
        elif isinstance(value, (float, np.floating)) and not np.isfinite(value):
            replaced.append(path)
            return None
        return value

    clean(summary, "")
    return [f"{path} is not finite (the values it summarises are too large: it overflowed float64); written as "
            "null" for path in replaced]
