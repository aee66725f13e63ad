"""Count metrics across regions: predicted log counts ``c`` vs ``y = ln(1 + observed total)`` (or, with
``target="log"``, ``y = ln(observed total)``: BPReveal's count target).

Each function reduces the last axis (the regions), so 1-D inputs give one number and ``(T, n)``
inputs give one per track. NaN inputs propagate (drop them first where wanted).
``metrics.count_summary.count_metrics`` is what the summary calls (numpy; plain floats).
"""

import torch

from ..seed import log_count_target
from .correlation import NAN, is_constant, pearson, spearman



def log1p_total(total_counts):
    """``y = ln(1 + N)``: the default count target of every count metric (natural log)."""
    return torch.log1p(total_counts)


def count_pearson(log_predicted_counts, total_counts, zero_variance=NAN, target="log1p"):
    """``pearson(c, ln(1 + N))`` across regions (last axis).

    Parameters
    ----------
    log_predicted_counts : torch.Tensor, shape=(..., n)
        Predicted log counts ``c``.
    total_counts : torch.Tensor, shape=(..., n)
        Observed totals ``N``.
    zero_variance : float
        Value where a variance is 0: NaN, or 0 as bpnet-lite.
    target : {"log1p", "log"}
        ``y = ln(1 + N)`` (default) or ``ln N``.

    Returns
    -------
    r : torch.Tensor, shape=(...)
    """
    return pearson(log_predicted_counts, log_count_target(total_counts, target), zero_variance=zero_variance)


def count_spearman(log_predicted_counts, total_counts, ties="average", zero_variance=NAN, target="log1p"):
    """``pearson(rank(c), rank(ln(1 + N)))`` across regions; ``ties="ordinal"`` as bpnet-lite.

    Parameters
    ----------
    log_predicted_counts, total_counts : torch.Tensor, shape=(..., n)
    ties : {"average", "ordinal"}
        Averaged ranks for ties (scipy, chrombpnet, BPNet) or ordinal ranks (bpnet-lite).
    zero_variance : float
    target : {"log1p", "log"}
        ``y = ln(1 + N)`` (default) or ``ln N``.

    Returns
    -------
    rho : torch.Tensor, shape=(...)
    """
    return spearman(log_predicted_counts, log_count_target(total_counts, target), ties=ties, zero_variance=zero_variance)


def count_mse(log_predicted_counts, total_counts, target="log1p"):
    """``mean_r (ln(1 + N_r) - c_r)^2`` across regions.

    Parameters
    ----------
    log_predicted_counts, total_counts : torch.Tensor, shape=(..., n)
    target : {"log1p", "log"}
        ``y = ln(1 + N)`` (default) or ``ln N``.

    Returns
    -------
    mse : torch.Tensor, shape=(...)
    """
    return torch.mean(torch.square(log_count_target(total_counts, target) - log_predicted_counts), dim=-1)


def count_mae(log_predicted_counts, total_counts, target="log1p"):
    """``mean_r |ln(1 + N_r) - c_r|`` across regions (BPNet's ``mad``).

    Parameters
    ----------
    log_predicted_counts, total_counts : torch.Tensor, shape=(..., n)
    target : {"log1p", "log"}
        ``y = ln(1 + N)`` (default) or ``ln N``.

    Returns
    -------
    mae : torch.Tensor, shape=(...)
    """
    return torch.mean(torch.abs(log_count_target(total_counts, target) - log_predicted_counts), dim=-1)


def count_variance_explained(log_predicted_counts, total_counts, target="log1p"):
    """``1 - var(y - c) / var(y)``, ``y = ln(1 + N)``, across regions (BPNet's ``var_explained``).

    Parameters
    ----------
    log_predicted_counts, total_counts : torch.Tensor, shape=(..., n)
    target : {"log1p", "log"}
        ``y = ln(1 + N)`` (default) or ``ln N``.

    Returns
    -------
    fraction : torch.Tensor, shape=(...)
        NaN where ``var(y) = 0``. Unlike R^2, a constant offset of ``c`` is not penalised.
    """
    y = log_count_target(total_counts, target)
    explained = 1 - torch.var(y - log_predicted_counts, dim=-1, correction=0) / torch.var(y, dim=-1, correction=0)
    return torch.where(is_constant(y), NAN, explained)


COUNT_FUNCTIONS = {"pearson": count_pearson, "spearman": count_spearman, "mse": count_mse,
                   "mae": count_mae, "variance_explained": count_variance_explained}


def torch_count_metric(name: str, predicted, totals, ties: str = "average", target: str = "log1p") -> float:
    """``count_summary.count_metric`` computed by the torch functions above (for bpnet-lite's ``ties="argsort"``,
    torch's own tie order): float64 numpy or tensors in, a float out."""
    options = {"target": target}
    if name == "spearman":
        options["ties"] = ties
    if ties in ("ordinal", "argsort") and name in ("pearson", "spearman"):  # bpnet-lite: 0, not NaN
        options["zero_variance"] = 0.0
    return float(COUNT_FUNCTIONS[name](torch.as_tensor(predicted), torch.as_tensor(totals), **options))
