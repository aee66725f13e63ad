"""Pearson and Spearman correlation over the last axis, vectorised over every leading axis.

Shared by the profile metrics (correlation over positions, per region) and the count metrics
(correlation over regions).
"""

import math

import numpy as np
import torch

from .names import TIES
from .sorting import array_order, by_numpy, any_sort, side_by_side, sort_by, stable_order, take_in_rows, torch_order

NAN = float("nan")
# ``ties="argsort"``: bpnet-lite's own ranks (``argsort_ranks``), beside ``names.TIES``.
ARGSORT = "argsort"
RANK_TIES = TIES + (ARGSORT,)
# Integer values up to this many times the row length are ranked by a histogram instead of a sort.
COUNT_RANK_SPAN = 4
# On the CPU, counts up to more than an eighth of the row length are ranked from their nonzero values alone where
# those are at most this share of the positions plus a quarter of the histogram's bins per row (about where the two
# ways cost the same).
SPARSE_COUNT_SHARE = 0.125


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
    sxy = torch.sum(dx * dy, dim=-1)
    # the squares in place (the same products, fewer temporaries: ~15% less time on cache-sized rows)
    r = sxy / torch.sqrt(torch.sum(dx.mul_(dx), dim=-1) * torch.sum(dy.mul_(dy), dim=-1))
    return torch.where(is_constant(x) | is_constant(y), zero_variance, torch.clamp(r, -1.0, 1.0))


def is_constant(x):
    """``max x == min x`` over the last axis: zero variance, tested exactly (not via rounded deviations)."""
    return x.amax(dim=-1) == x.amin(dim=-1)


def average_ranks(x):
    """Ranks ``1..n`` over the last axis, tied values sharing the mean of their ranks (scipy ``rankdata``).

    Vectorised: small non-negative integers (read counts) by one histogram per row
    (``count_ranks``), anything else by one sort with tie groups found from cumulative
    maxima/minima of their boundaries (``sorted_average_ranks``); both give the same exact ranks.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    ranks : torch.Tensor, shape=(..., n)
        Same dtype as ``x``; NaN where ``x`` is NaN.
    """
    top = small_count_top(x)
    return sorted_average_ranks(x) if top is None else count_ranks(x, top)


def small_count_top(x):
    """``max x`` when every value of ``x`` is an integer in ``0 .. COUNT_RANK_SPAN * n`` (``n``: the last
    axis), so that a histogram per row is no larger than a few copies of ``x``; else None."""
    n = x.shape[-1]
    if x.numel() == 0 or not x.dtype.is_floating_point:
        return None
    low, high = torch.aminmax(x)  # NaN propagates into both and fails the test below
    if not (bool(low >= 0) and bool(high <= COUNT_RANK_SPAN * n)) or not torch.equal(x, torch.floor(x)):
        return None
    return int(high)


def count_ranks(x, top):
    """Average ranks of non-negative integers ``<= top``: ``#{j: x_j < v} + (#{j: x_j = v} + 1) / 2`` for value ``v``,
    from one histogram of ``top + 1`` bins per row (the same numbers as a sort, ties averaged); on the CPU, of
    mostly-zero counts from their nonzero values alone (``sparse_count_ranks``)."""
    if by_numpy(x):
        sparse = sparse_count_ranks(x.detach().numpy(), top)
        if sparse is not None:
            return torch.from_numpy(sparse)
    values = x.reshape(-1, x.shape[-1]).to(torch.int64)
    n_rows = values.shape[0]
    offsets = torch.arange(n_rows, device=x.device)[:, None] * (top + 1)
    histogram = torch.bincount((values + offsets).flatten(), minlength=n_rows * (top + 1)).reshape(n_rows, top + 1)
    below = torch.cumsum(histogram, dim=-1) - histogram
    table = below.to(x.dtype) + (histogram.to(x.dtype) + 1) / 2
    return torch.gather(table, -1, values).reshape(x.shape)


def sparse_count_ranks(counts, top):
    """``count_ranks`` of a numpy array of integers in ``0 .. top`` that is mostly zero, with a large ``top``
    (``SPARSE_COUNT_SHARE``; None otherwise), from one sort of its nonzero values keyed by row: a row's ``z`` zeros
    rank ``(z + 1) / 2``, a nonzero value ``v`` ranks ``z + #{nonzero < v} + (#{= v} + 1) / 2`` (the histogram's
    ``below + (count + 1) / 2``, computed alike: the same exact numbers)."""
    n = counts.shape[-1]
    rows = counts.reshape(-1, n)
    if (top + 1) * 8 <= n or np.count_nonzero(rows) > SPARSE_COUNT_SHARE * rows.size + rows.shape[0] * (top + 1) / 4:
        return None  # low counts (a small histogram), or too many nonzero ones
    where = np.flatnonzero(rows != 0)
    nonzero_ranks, zeros = _nonzero_average_ranks(rows, where, where // n)
    dtype = counts.dtype.type
    ranks = np.empty(rows.shape, dtype=counts.dtype)
    ranks[...] = ((zeros.astype(dtype) + 1) / 2)[:, None]
    ranks.reshape(-1)[where] = nonzero_ranks  # halves: exact in either dtype
    return ranks.reshape(counts.shape)


def sorted_average_ranks(x):
    """Average ranks over the last axis by one sort (ties in any order): each tie group's ``(first + last) / 2 + 1``
    (``position + 1`` in rows without ties, the usual case for predictions, so only rows with ties find their
    groups)."""
    n = x.shape[-1]
    sorted_x, order = any_sort(x.reshape(-1, n))
    starts_group = torch.ones_like(order, dtype=torch.bool)
    starts_group[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    sorted_ranks = torch.arange(1, n + 1, device=x.device, dtype=x.dtype).repeat(order.shape[0], 1)
    tied = torch.nonzero(~starts_group.all(dim=-1)).flatten()
    if tied.numel():
        sorted_ranks[tied] = _tie_averaged_ranks(starts_group[tied], x.dtype)
    ranks = torch.empty_like(sorted_x).scatter_(-1, order, sorted_ranks).reshape(x.shape)
    if sorted_x.numel() and bool(torch.isnan(sorted_x[:, -1]).any()):  # NaN sorts last
        ranks = torch.where(torch.isnan(x), NAN, ranks)
    return ranks


def _tie_averaged_ranks(starts_group, dtype):
    """``(first + last) / 2 + 1`` at each sorted position, ``first`` and ``last`` the positions its tie group spans."""
    n = starts_group.shape[-1]
    position = torch.arange(n, device=starts_group.device).expand_as(starts_group)
    ends_group = torch.ones_like(starts_group)
    ends_group[..., :-1] = starts_group[..., 1:]
    first = torch.cummax(torch.where(starts_group, position, 0), dim=-1).values
    last = torch.cummin(torch.where(ends_group, position, n).flip(-1), dim=-1).values.flip(-1)
    return (first + last).to(dtype) / 2 + 1


def inverse_permutation(order):
    """``argsort(order)`` of permutations ``order`` along the last axis, by one scatter instead of a sort."""
    position = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, position)


def ordinal_ranks(x):
    """Ranks ``1..n`` over the last axis as ``argsort(argsort(x)) + 1``: ties broken by position (scipy ``ordinal``).

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    ranks : torch.Tensor, shape=(..., n)
        Same dtype as ``x``. A stable sort is used, so equal values rank in order of position;
        bpnet-lite's unstable ``argsort`` orders ties otherwise: ``argsort_ranks`` reproduces it.
    """
    return inverse_permutation(stable_order(x)).to(x.dtype) + 1


def argsort_ranks(x):
    """bpnet-lite's ranks ``0..n-1``: ``x.argsort().argsort()`` with torch's default (unstable) sort, as float32.

    Ties are ordered as torch's sort leaves them for these values (on the CPU not by position, and
    not as ``ordinal_ranks``); ranking the same values with the same dtype and torch gives bpnet-lite's
    order, which with many ties (zero counts, tied logits) decides the correlation, even its sign.

    Parameters
    ----------
    x : torch.Tensor, shape=(..., n)

    Returns
    -------
    ranks : torch.Tensor, shape=(..., n)
        float32 whatever ``x``'s dtype (bpnet-lite's ``.type(torch.float32)``), so the Spearman
        correlation of these ranks is computed in float32 too.
    """
    return inverse_permutation(torch_order(x)).to(torch.float32)


def ranks(x, ties="average"):
    """Ranks over the last axis: ``average_ranks`` (``ties="average"``), ``ordinal_ranks`` (``"ordinal"``)
    or bpnet-lite's ``argsort_ranks`` (``"argsort"``: float32, 0-based, torch's tie order)."""
    if ties not in RANK_TIES:
        raise ValueError(f"ties must be one of {RANK_TIES}, not {ties!r}")
    if ties == ARGSORT:
        return argsort_ranks(x)
    return average_ranks(x) if ties == "average" else ordinal_ranks(x)


def spearman(x, y, ties="average", zero_variance=NAN, order=None):
    """Spearman correlation ``pearson(rank(x), rank(y))`` over the last axis.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(..., n)
    ties : {"average", "ordinal", "argsort"}
        Averaged ranks for ties (scipy ``spearmanr``, default), ordinal ranks (ties by position) or
        bpnet-lite's ``argsort_ranks`` (its tie order; the result is then float32, as bpnet-lite's).
    zero_variance : float
        The value where a rank variance is 0 (all values tied): NaN by default.
    order : torch.Tensor, shape=(..., n), int64, optional
        A candidate ascending order of ``x`` (e.g. of values that rise and fall with it), taken where it sorts ``x``
        in place of a sort (``sort_by``); only where ``sorts_once``.

    Returns
    -------
    rho : torch.Tensor, shape=(...)
    """
    if sorts_once(x, y, ties):
        return _spearman_from_rank_sums(x, y, zero_variance, order)
    return pearson(ranks(x, ties), ranks(y, ties), zero_variance=zero_variance)


def sorts_once(x, y, ties="average"):
    """Whether ``spearman(x, y, ties)`` ranks ``x`` by one sort, which an ``order`` given may replace: averaged ranks
    whose sums are exact (``_sums_are_exact``)."""
    return ties == "average" and _sums_are_exact(x, y)


# Averaged ranks are multiples of 1/2, so every sum ``pearson`` adds of two rows of them is exact in float64 (any
# order) for rows of up to this many values: ``_spearman_from_rank_sums`` forms those sums another way.
EXACT_RANK_SUMS_LENGTH = 1 << 16


def _sums_are_exact(x, y):
    """Whether ``spearman`` may take ``_spearman_from_rank_sums``: float64 rows of one shape on the CPU, at most
    ``EXACT_RANK_SUMS_LENGTH`` long, ``y`` non-negative (counts), neither holding a NaN (checked there)."""
    return (by_numpy(x) and by_numpy(y) and x.dtype == y.dtype == torch.float64 and x.shape == y.shape
            and 0 < x.shape[-1] <= EXACT_RANK_SUMS_LENGTH and x.numel() > 0)


def _spearman_from_rank_sums(x, y, zero_variance, order=None):
    """``pearson(average_ranks(x), average_ranks(y))``, bit for bit, from the sums it divides formed without its
    passes over every rank: with ``m = (n + 1) / 2`` every row's mean rank and ``c`` the rank of ``y``'s zeros,
    ``sum (rx - m)(ry - m) = sum (rx - m)(ry - c)`` (the terms add ``(c - m) sum (rx - m) = 0``), whose terms are 0
    where ``y = 0``, with ``y``'s ranks from its nonzero values (``_nonzero_average_ranks``). Where ``y`` is mostly
    zero, ``x``'s ranks are taken at its nonzero positions (one inverse of ``x``'s sort); else ``y``'s centred ranks
    in ``x``'s sorted order are summed against ``k + 1 - m`` at each sorted position ``k`` (one gather, one product
    with a fixed vector). Both sums are then corrected where ``x`` ties; ``sum (rx - m)^2 = (n^3 - n) / 12`` in a row
    without ties. Every such sum is exact (multiples of 1/4 below 2**50 quarters, in any order, as ``pearson``'s
    are), so they are the same numbers, and the last step (product, root, division, clamp) is ``pearson``'s own.
    Negative ``y`` or a NaN: ``pearson`` of the ranks. ``order``: a candidate ascending order of ``x``
    (``sort_by``), else ``x`` is sorted."""
    n = x.shape[-1]
    xs, ys = x.detach().numpy().reshape(-1, n), y.detach().numpy().reshape(-1, n)
    if not ys.min() >= 0:  # also NaN
        return pearson(average_ranks(x), average_ranks(y), zero_variance=zero_variance)
    sorted_x, order = any_sort(x.reshape(-1, n)) if order is None else sort_by(x.reshape(-1, n), order.reshape(-1, n))
    sorted_x, order = sorted_x.numpy(), order.numpy()
    if np.isnan(sorted_x[:, -1]).any():  # NaN sorts last
        return pearson(average_ranks(x), average_ranks(y), zero_variance=zero_variance)
    mean = (n + 1) / 2
    where = np.flatnonzero(ys != 0)  # (on a mask: several times faster than on the values)
    row = where // n
    ry, zeros = _nonzero_average_ranks(ys, where, row)
    zero_rank = (zeros + 1) / 2
    y_squares = zeros * np.square(zero_rank - mean) + _sums_by_row(np.square(ry - mean), n - zeros)
    ry -= zero_rank[row]  # ry - c at the nonzero values (0 at the zeros)
    if where.size * SPARSE_RANK_SHARE < ys.size:  # x's rank at each nonzero y: its sorted position + 1
        rx = inverse_permutation(torch.from_numpy(order)).numpy().reshape(-1)[where] + 1.0
        products = _sums_by_row((rx - mean) * ry, n - zeros)
    else:  # against the ranks k + 1 of the sorted positions k
        products = take_in_rows(_laid_out(ry, where, ys.shape), order) @ (np.arange(1.0, n + 1) - mean)
    x_squares = np.full(len(xs), (n ** 3 - n) / 12)  # sum (rx - m)^2 of the ranks 1 .. n
    _add_tie_corrections(sorted_x, order, ry, where, products, x_squares)
    sxy, sxx, syy = (torch.from_numpy(v.reshape(x.shape[:-1])) for v in (products, x_squares, y_squares))
    r = sxy / torch.sqrt(sxx * syy)
    return torch.where((sxx == 0) | (syy == 0), zero_variance, torch.clamp(r, -1.0, 1.0))


# ``_spearman_from_rank_sums`` takes ``x``'s ranks at ``y``'s nonzero values where those are fewer than one in this
# many positions (about where the two ways cost the same).
SPARSE_RANK_SHARE = 4


def _laid_out(values, where, shape):
    """An array of ``shape`` holding ``values`` at the flat positions ``where`` (ascending) and 0 elsewhere (``values``
    itself, reshaped, where ``where`` is every position)."""
    if where.size == math.prod(shape):
        return values.reshape(shape)
    laid_out = np.zeros(shape)
    laid_out.reshape(-1)[where] = values
    return laid_out


def _add_tie_corrections(sorted_x, order, centred_y, where, products, x_squares):
    """Turn the sums of ``_spearman_from_rank_sums`` over the ranks ``k + 1`` of the sorted positions ``k`` into
    sums over the averaged ranks, in place, from the tied positions only: a tie group of ``t`` sorted positions
    ``f .. l`` ranks ``(f + l) / 2 + 1`` each, which lowers ``sum (rx - m)^2`` by ``(t^3 - t) / 12`` and adds
    ``((f + l) / 2 - k) (ry - c)`` to the products at each of its positions ``k`` (``centred_y``: ``ry - c`` at the
    flat positions ``where`` of the nonzero ``y``, 0 elsewhere). Every term is a multiple of 1/4 and every sum exact,
    so the sums are the same numbers as from the averaged ranks themselves."""
    rows, n = sorted_x.shape
    values = sorted_x.reshape(-1)
    with_next = np.zeros(values.size, dtype=bool)  # at flat k: k and k + 1 tied in one row (NaN-free here)
    np.equal(values[1:], values[:-1], out=with_next[:-1])
    with_next[n - 1::n] = False  # a row's last and the next row's first
    if not with_next.any():
        return
    with_before = np.zeros(values.size, dtype=bool)
    with_before[1:] = with_next[:-1]
    tied = np.flatnonzero(with_next | with_before)  # every tied sorted position, ascending
    first = ~with_before[tied]  # not tied to the one before: a group starts
    group = np.cumsum(first) - 1
    starts = tied[first]
    sizes = np.bincount(group)
    half_sum = starts + (sizes - 1) / 2  # (f + l) / 2 of each group, flat
    x_squares -= np.bincount(starts // n, weights=(sizes ** 3 - sizes) / 12, minlength=rows)
    positions = (tied // n) * n + order.reshape(-1)[tied]  # each tied sorted position's flat position in x
    terms = (half_sum[group] - tied) * _laid_out(centred_y, where, sorted_x.shape).reshape(-1)[positions]
    products += np.bincount(tied // n, weights=terms, minlength=rows)


def _sums_by_row(values, counts):
    """The sum of each row's ``values``, laid out row after row, ``counts[r]`` of them in row ``r``
    (``np.bincount(row, weights=values)``, several times faster): here sums of multiples of 1/4 below 2**50 quarters,
    exact and so the same numbers whatever the order of their terms."""
    sums = np.zeros(len(counts))
    present = np.flatnonzero(counts)
    if present.size:
        sums[present] = np.add.reduceat(values, (np.cumsum(counts) - counts)[present])
    return sums


def _nonzero_average_ranks(values, where, row):
    """Averaged ranks (float64) of non-negative rows ``values`` ``(R, n)`` at their nonzero flat positions ``where``
    (rows ``row``), and each row's number of zeros ``z`` (which rank ``(z + 1) / 2``): a nonzero value
    ``v`` ranks ``z + #{nonzero < v} + (#{= v} + 1) / 2``: from a histogram of each row's values where they are whole
    numbers of a range narrower than their number (``_binned_ranks``: counts on most bases), else from one sort of
    the nonzero values by row."""
    n = values.shape[-1]
    zeros = n - np.bincount(row, minlength=len(values))
    if not where.size:
        return np.empty(0), zeros
    nonzero = values.reshape(-1)[where]
    binned = _binned_ranks(nonzero, row, zeros)
    if binned is not None:
        return binned, zeros
    # each row's nonzero values side by side, sorted row by row; after them +inf, in one group after every finite
    # value (its packed keys sort several times faster than ``argsort``), or NaN where a value is +inf (each its own
    # group, last)
    width = int((n - zeros).max())
    at = side_by_side(row, n - zeros, width)
    finite = bool(np.isfinite(nonzero).all())
    laid_out = np.full((len(values), width), np.inf if finite else np.nan)
    laid_out.reshape(-1)[at] = nonzero
    order = array_order(laid_out) if finite else np.argsort(laid_out, axis=-1)
    ordered = take_in_rows(laid_out, order).reshape(-1)
    new_group = np.ones(ordered.size, dtype=bool)
    new_group[1:] = ordered[1:] != ordered[:-1]
    new_group[::width] = True  # a row's first value
    starts = np.flatnonzero(new_group)  # flat sorted index of each group's first value
    group = np.cumsum(new_group) - 1
    size = np.diff(np.append(starts, ordered.size))
    sorted_ranks = np.repeat(zeros, width) + (starts % width)[group] + (size[group] + 1) / 2
    ranks = np.empty(ordered.size)
    ranks[(order + (np.arange(len(values)) * width)[:, None]).reshape(-1)] = sorted_ranks
    return ranks[at], zeros


def _binned_ranks(nonzero, row, zeros):
    """``_nonzero_average_ranks`` of the positive values ``nonzero`` (in rows ``row``, whose numbers of zeros are
    ``zeros``) from a table of the rank of each whole number up to ``top`` in each row: ``z + below + (tied + 1) / 2``
    from one histogram (``below`` its cumulative sum before each bin). Where the values are not all whole numbers,
    or the table would hold more entries than there are values, None."""
    top = nonzero.max()
    n_rows = len(zeros)
    if not (n_rows * (top + 1) <= nonzero.size and nonzero.min() > 0):  # also NaN and inf; no negative value
        return None
    whole = nonzero.astype(np.int64)
    if not np.array_equal(whole, nonzero):
        return None
    whole += row * (int(top) + 1)  # the bin of each value in its row's part of the table
    histogram = np.bincount(whole, minlength=n_rows * (int(top) + 1)).reshape(n_rows, -1)
    below = np.cumsum(histogram, axis=-1)
    below -= histogram
    below += zeros[:, None]
    table = below + (histogram + 1) / 2
    return np.take(table.reshape(-1), whole)
