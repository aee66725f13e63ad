"""Which way is better for each per-region metric column: the one place that says so.

Per-track columns (``<metric>_<track>``, e.g. ``profile_mnll_plus``) follow their metric.
Columns that describe the data rather than the model's quality (observed counts, predicted
log counts, shuffled baselines) have no direction and are not compared.
"""

from typing import Optional

from .metrics.names import BIN_SIZES

LOWER_IS_BETTER = frozenset({
    "profile_mnll", "profile_mnll_per_base", "profile_cross_entropy", "profile_jsd_divergence",
    "profile_jsd_distance", "count_log1p_mse", "count_log_mse", "mixture_loss",
})
HIGHER_IS_BETTER = frozenset({
    "profile_norm_jsd", "profile_pearson", "profile_spearman",
    *(f"profile_auprc_bin{b}" for b in BIN_SIZES),
})


def metric_of(column: str) -> Optional[str]:
    """The metric a column holds: the column itself, or the column less a ``_<track>`` suffix."""
    known = LOWER_IS_BETTER | HIGHER_IS_BETTER
    if column in known:
        return column
    base = column.rsplit("_", 1)[0]
    return base if base in known else None


def better_direction(column: str) -> Optional[str]:
    """``"lower"`` or ``"higher"`` (which values are better), or None for a column that is not a metric."""
    metric = metric_of(column)
    if metric is None:
        return None
    return "lower" if metric in LOWER_IS_BETTER else "higher"


# The across-region count metrics of the summary (``summary["counts"]``).
COUNT_LOWER_IS_BETTER = frozenset({"mse", "mae"})
COUNT_HIGHER_IS_BETTER = frozenset({"pearson", "spearman", "variance_explained"})


def count_direction(name: str) -> Optional[str]:
    """``"lower"`` or ``"higher"`` for a summary count metric (``mse``, ``pearson``, ...), else None."""
    if name in COUNT_LOWER_IS_BETTER:
        return "lower"
    return "higher" if name in COUNT_HIGHER_IS_BETTER else None
