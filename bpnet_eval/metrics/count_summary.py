"""The count metrics across regions that the summary reports, in float64 numpy (no torch import).

Predicted log counts ``c`` against ``y = ln(1 + N)`` (or ``ln N``: BPReveal's target) over the regions of a
report: the formulas of ``metrics.counts`` (whose torch functions are vectorised over tracks for the
Python API), on the one-dimensional columns of a run. Only bpnet-lite's ``ties="argsort"`` ranks, which
are torch's own tie order, import torch.
"""

import numpy as np

from ..seed import log_count_target
from .names import COUNT_METRICS_DEFAULT

NAN = float("nan")


def pearson(x: np.ndarray, y: np.ndarray, zero_variance: float = NAN) -> float:
    """Pearson correlation ``sum(dx dy) / sqrt(sum dx^2 sum dy^2)``, ``d = value - mean``, clipped to [-1, 1];
    ``zero_variance`` (NaN, or bpnet-lite's 0) where either input is constant (tested exactly)."""
    if x.max() == x.min() or y.max() == y.min():
        return zero_variance
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.clip(np.sum(dx * dy) / np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)), -1.0, 1.0))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..n``, tied values sharing the mean of their ranks (scipy ``rankdata``); NaN where ``x`` is NaN."""
    order = np.argsort(x)  # numpy's fastest sort: ties share one rank, so their order does not matter (NaNs last)
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # each NaN is a group of its own
    group = np.cumsum(starts) - 1
    bounds = np.r_[np.flatnonzero(starts), len(x)]  # group g holds sorted positions bounds[g] .. bounds[g+1]-1
    ranks = np.empty(len(x))
    ranks[order] = (bounds[group] + bounds[group + 1] + 1) / 2
    ranks[np.isnan(x)] = NAN
    return ranks


def ordinal_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..n``, ties broken by position (scipy ``rankdata(method="ordinal")``)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    return ranks


def count_metric(name: str, c: np.ndarray, totals: np.ndarray, ties: str = "average", target: str = "log1p") -> float:
    """One count metric of predicted log counts ``c`` against ``y = log_count_target(totals, target)`` (float64, one
    per region):

    ``pearson(c, y)``; ``spearman``: ``pearson(rank(c), rank(y))``; ``mse``: ``mean (y - c)^2``; ``mae``:
    ``mean |y - c|``; ``variance_explained``: ``1 - var(y - c) / var(y)`` (NaN where ``y`` is constant).
    ``ties="ordinal"`` (bpnet-lite) ranks ties by position and gives 0, not NaN, for a constant input."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge log counts: inf, then None with a warning
        return _count_metric(name, c, log_count_target(totals, target), ties)


def _count_metric(name: str, c: np.ndarray, y: np.ndarray, ties: str) -> float:
    zero_variance = 0.0 if ties == "ordinal" else NAN
    if name == "pearson":
        return pearson(c, y, zero_variance)
    if name == "spearman":
        rank = average_ranks if ties == "average" else ordinal_ranks
        return pearson(rank(c), rank(y), zero_variance)
    if name == "mse":
        return float(np.mean(np.square(y - c)))
    if name == "mae":
        return float(np.mean(np.abs(y - c)))
    if name == "variance_explained":
        return NAN if y.max() == y.min() else float(1 - np.var(y - c) / np.var(y))
    raise ValueError(f"unknown count metric {name!r}")


def count_metrics(predicted_logcounts, observed_totals, names=COUNT_METRICS_DEFAULT, ties="average",
                  target="log1p") -> dict:
    """The count metrics ``names`` of float64 predicted log counts vs ``ln(1 + total)`` (or ``ln(total)``) across
    regions.

    Parameters
    ----------
    predicted_logcounts : array-like, shape=(n,)
    observed_totals : array-like, shape=(n,)
    names : sequence of str
        From ``COUNT_METRICS_ALL``; default Pearson, Spearman and MSE.
    ties : {"average", "ordinal", "argsort"}
        Spearman ranks: averaged (scipy), ordinal (which also gives 0, not NaN, for a correlation with a
        constant), or bpnet-lite's torch ``argsort().argsort()`` ranks (``metrics.counts``, imports torch).
    target : {"log1p", "log"}
        ``y = ln(1 + total)`` (default) or ``ln(total)`` (BPReveal): regions without reads have no ``ln(total)``
        and are left out.

    Returns
    -------
    metrics : dict of str to float or None
        None where undefined (a correlation of fewer than 2 regions or of a constant, no regions).
    """
    predicted = np.asarray(predicted_logcounts, dtype=np.float64).reshape(-1)
    totals = np.asarray(observed_totals, dtype=np.float64).reshape(-1)
    if target == "log":  # ln(0) is undefined: those regions are not counted
        defined = totals > 0
        predicted, totals = predicted[defined], totals[defined]
    metric = count_metric
    if ties == "argsort":
        from .counts import torch_count_metric as metric  # bpnet-lite's tie order is torch's own
    out = {}
    for name in names:
        undefined = len(predicted) == 0 or (len(predicted) < 2 and name not in ("mse", "mae"))
        value = None if undefined else metric(name, predicted, totals, ties, target)
        out[name] = None if value is None or np.isnan(value) else value
    return out
