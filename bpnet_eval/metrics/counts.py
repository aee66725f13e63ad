"""Count metrics across regions: predicted log counts vs ``ln(1 + observed total)``.

``count_metrics`` is what the summary calls; it returns plain floats.
"""

import numpy as np
import torch


def _as_float64(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def pearson(x, y):
    """Pearson correlation ``cov(x, y) / (sd(x) sd(y))`` over the last axis; NaN where a variance is 0."""
    xc = x - x.mean(dim=-1, keepdim=True)
    yc = y - y.mean(dim=-1, keepdim=True)
    denominator = torch.sqrt(torch.sum(xc * xc, dim=-1) * torch.sum(yc * yc, dim=-1))
    return torch.where(denominator > 0, torch.sum(xc * yc, dim=-1) / denominator,
                       torch.full_like(denominator, float("nan")))


def average_ranks(x):
    """Ranks 1..n over the last axis, ties given the mean of their ranks (scipy's ``rankdata``)."""
    order = torch.argsort(x, dim=-1, stable=True)
    sorted_x = torch.gather(x, -1, order)
    n = x.shape[-1]
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[..., 1:] = sorted_x[..., 1:] != sorted_x[..., :-1]
    group_id = torch.cumsum(new_group.to(torch.int64), dim=-1) - 1
    positions = torch.arange(1, n + 1, dtype=x.dtype, device=x.device).expand_as(sorted_x)
    first = torch.zeros_like(sorted_x).scatter_reduce(-1, group_id, positions, "amin", include_self=False)
    last = torch.zeros_like(sorted_x).scatter_reduce(-1, group_id, positions, "amax", include_self=False)
    sorted_ranks = torch.gather((first + last) / 2, -1, group_id)
    return torch.empty_like(sorted_ranks).scatter_(-1, order, sorted_ranks)


def spearman(x, y):
    """Spearman correlation: Pearson of the averaged ranks of x and y over the last axis."""
    return pearson(average_ranks(x), average_ranks(y))


def count_metrics(predicted_logcounts, observed_totals) -> dict:
    """Pearson, Spearman and MSE of predicted log counts vs ``ln(1 + total)`` across regions."""
    predicted = _as_float64(predicted_logcounts)
    target = torch.log1p(_as_float64(observed_totals))
    if predicted.numel() < 2:
        return {"pearson": None, "spearman": None, "mse": float(torch.mean((predicted - target) ** 2)) if predicted.numel() else None}
    to_float = lambda t: None if torch.isnan(t) else float(t)  # noqa: E731
    return {"pearson": to_float(pearson(predicted, target)), "spearman": to_float(spearman(predicted, target)),
            "mse": float(torch.mean((predicted - target) ** 2))}
