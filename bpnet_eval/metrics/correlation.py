"""Pearson and Spearman correlation over the last axis, vectorised over every leading axis.

Shared by the profile metrics (correlation over positions, per region) and the count metrics
(correlation over regions).
"""

import torch

from .names import TIES

NAN = float("nan")


def pearson(x, y, zero_variance=NAN):
    """Pearson correlation ``sum(dx dy) / sqrt(sum dx^2 sum dy^2)``, ``d = value - mean``, over the last axis.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(..., n)
        Values to correlate; any float dtype.
    zero_variance : float
        The value where either input is constant (variance 0): NaN (undefined, scipy) by default;
        bpnet-lite uses 0.

    Returns
    -------
    r : torch.Tensor, shape=(...)
        Clipped to [-1, 1]; NaN inputs give NaN.
    """
    dx = x - x.mean(dim=-1, keepdim=True)
    dy = y - y.mean(dim=-1, keepdim=True)
    r = torch.sum(dx * dy, dim=-1) / torch.sqrt(torch.sum(dx * dx, dim=-1) * torch.sum(dy * dy, dim=-1))
    return torch.where(is_constant(x) | is_constant(y), zero_variance, torch.clamp(r, -1.0, 1.0))


def is_constant(x):
    """``max x == min x`` over the last axis: zero variance, tested exactly (not via rounded deviations)."""
    return x.amax(dim=-1) == x.amin(dim=-1)


def average_ranks(x):
    """Ranks ``1..n`` over the last axis, tied values sharing the mean of their ranks (scipy ``rankdata``).

    Vectorised: one sort, tie groups found with cumulative maxima/minima of their boundaries.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    ranks : torch.Tensor, shape=(..., n)
        Same dtype as ``x``; NaN where ``x`` is NaN.
    """
    sorted_x, order = torch.sort(x, dim=-1, stable=True)
    n = x.shape[-1]
    position = torch.arange(n, device=x.device).expand_as(order)
    starts_group = torch.ones_like(order, dtype=torch.bool)
    starts_group[..., 1:] = sorted_x[..., 1:] != sorted_x[..., :-1]
    ends_group = torch.ones_like(starts_group)
    ends_group[..., :-1] = starts_group[..., 1:]
    first = torch.cummax(torch.where(starts_group, position, 0), dim=-1).values
    last = torch.cummin(torch.where(ends_group, position, n).flip(-1), dim=-1).values.flip(-1)
    sorted_ranks = (first + last).to(x.dtype) / 2 + 1
    ranks = torch.empty_like(x).scatter_(-1, order, sorted_ranks)
    return torch.where(torch.isnan(x), NAN, ranks)


def ordinal_ranks(x):
    """Ranks ``1..n`` over the last axis as ``argsort(argsort(x)) + 1``: ties broken by position (bpnet-lite).

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    ranks : torch.Tensor, shape=(..., n)
        Same dtype as ``x``. A stable sort is used, so equal values rank in order of position;
        bpnet-lite's unstable ``argsort`` may order ties differently on some devices.
    """
    return torch.argsort(torch.argsort(x, dim=-1, stable=True), dim=-1).to(x.dtype) + 1


def ranks(x, ties="average"):
    """Ranks over the last axis: ``average_ranks`` (``ties="average"``) or ``ordinal_ranks`` (``"ordinal"``)."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
    return average_ranks(x) if ties == "average" else ordinal_ranks(x)


def spearman(x, y, ties="average", zero_variance=NAN):
    """Spearman correlation ``pearson(rank(x), rank(y))`` over the last axis.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(..., n)
    ties : {"average", "ordinal"}
        Averaged ranks for ties (scipy ``spearmanr``, default) or ordinal ranks (bpnet-lite).
    zero_variance : float
        The value where a rank variance is 0 (all values tied): NaN by default.

    Returns
    -------
    rho : torch.Tensor, shape=(...)
    """
    return pearson(ranks(x, ties), ranks(y, ties), zero_variance=zero_variance)
