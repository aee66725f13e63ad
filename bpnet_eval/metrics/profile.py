"""Profile metrics: how well predicted position probabilities match one region's observed counts.

Every metric reduces the last axis. Pass ``(B, S, L)`` tensors normalised per track for per-track
values ``(B, S)``; pass ``flatten_tracks`` of tensors normalised jointly for values over all
tracks as one distribution ``(B,)``. ``profile_metrics`` does both from one softmax pass.
"""

import math
from functools import lru_cache

import numpy as np
import torch

from ..losses import joint_log_softmax
from ..seed import log_factorial_table, read_count_indices
from .auprc import (NEG_MAX_FRACTION, POS_MIN_FRACTION, REQUIRED_MIN_POS_COUNTS, auprc_region_mask, average_precision,
                    binned_labels_scores_by_size)
from .correlation import NAN, pearson, sorts_once, spearman
from .names import BIN_SIZES, PROFILE_METRICS_ALL, PROFILE_METRICS_DEFAULT
from .smoothing import DEFAULT_SIGMA, DEFAULT_WIDTH, smooth_gaussian1d
from .sorting import (any_order, by_numpy, count_true, distinct_order, flat_nonzero, nonzero_mask, orders_by_track,
                      put_flat, take_flat)


def flatten_tracks(x):
    """``(B, S, L) -> (B, S*L)``: the S*L positions of a region as one distribution."""
    return x.flatten(1)


def observed_probabilities(observed, pseudocount=0.0):
    """``q_i = k_i / (pseudocount + sum_i k_i)`` over the last axis (chrombpnet: pseudocount 0.001).

    Parameters
    ----------
    observed : torch.Tensor, shape=(..., L)
        Observed counts.
    pseudocount : float
        Added to the total; 0 gives NaN for a profile with no counts.

    Returns
    -------
    probs : torch.Tensor, shape=(..., L)
    """
    return observed / (pseudocount + observed.sum(dim=-1, keepdim=True))


def kl_divergence(p, q):
    """``KL(p || q) = sum_i p_i ln(p_i / q_i)`` over the last axis, terms with ``p_i = 0`` counted as 0.

    Parameters
    ----------
    p, q : torch.Tensor, shape=(..., L)
        Probabilities (not renormalised here). NaN in ``p`` propagates.

    Returns
    -------
    kl : torch.Tensor, shape=(...)
    """
    # ln 1 = 0 where p_i = 0 (the logarithm of 0 takes a slow path), so p_i ln(...) is 0 there with no mask
    return _sum_of_nonzero_terms(p, (q,), kl_terms, lambda: kl_terms(p, q, zero=p == 0))


def kl_terms(p, q, zero=None):
    """``p_i ln(p_i / q_i)`` elementwise, the ratio taken as 1 where ``zero`` (a mask; so the term is 0 where
    ``p_i = 0``).

    The same operations as the expression, in place on one temporary: with fewer temporaries the passes stay in
    the cache (~40% less time on cache-sized profiles).
    """
    terms = torch.div(p, q)
    if zero is not None:
        terms.masked_fill_(zero, 1.0)
    return terms.log_().mul_(p)


def midpoint(p, q):
    """``m = (p + q) / 2`` elementwise: the sum halved in place (times 0.5: the same bits as ``/ 2``, each the one
    rounding of the same exact half)."""
    return torch.add(p, q).mul_(0.5)


# ``_sum_of_nonzero_terms`` computes the terms only where ``p_i != 0`` when they are at most this fraction of
# the terms: the same numbers (each term the same operations on the same values, torch's log and lgamma
# elementwise whatever an element's position, tested; 0 written where ``p_i = 0``, as the terms are there) in a
# fraction of the time. A profile with no zero skips the mask. Both for contiguous profiles (the sum then adds
# the same terms in the same order).
SPARSE_FRACTION = 0.25


def _sum_of_nonzero_terms(p, others, term, dense):
    """``sum_i term(p_i, others_i)`` over the last axis where ``p_i != 0``, 0 where ``p_i = 0`` (``dense()`` gives the
    same terms computed at every position): the sums of ``_nonzero_terms``."""
    return torch.sum(_nonzero_terms(p, others, term, dense), dim=-1)


def _nonzero_terms(p, others, term, dense):
    """``term(p_i, others_i)`` where ``p_i != 0`` and 0 where ``p_i = 0``, at every position (``dense()`` gives the same
    terms computed at every position): the terms of a mostly-zero profile only, those of a profile with no zero
    without a mask; in a mostly-zero profile's rows holding a NaN, the NaN they sum to first (``_mostly_zero``)."""
    if not (p.is_contiguous() and all(o.shape == p.shape and o.is_contiguous() for o in others)):
        return dense()
    nonzero = nonzero_mask(p)
    n_nonzero = count_true(nonzero)
    if n_nonzero == p.numel():
        return term(p, *others)
    mostly_zero = _mostly_zero(p, nonzero, n_nonzero)
    if mostly_zero is None:
        return dense()
    support, undefined = mostly_zero
    terms = put_flat(torch.zeros_like(p), support, term(take_flat(p, support), *(take_flat(o, support) for o in others)))
    if undefined is not None:  # its NaN first in the row, which sums to it
        terms[..., 0][undefined[0]] = undefined[1].to(terms.dtype)
    return terms


def _mostly_zero(x, nonzero, n_nonzero=None):
    """``(support, undefined)`` where ``x`` is nonzero (``nonzero``: its mask, with ``n_nonzero`` true values when
    already counted) at most at a ``SPARSE_FRACTION`` of its positions, rows holding a NaN not counted: the flat
    positions of its nonzero values outside those rows, and ``(rows, nans)``: those rows (a bool tensor over the
    leading axes) and the NaN each sums to, its own NaN, as the terms computed from it would give (None where there
    are none). Such a row is a profile with no counts, NaN everywhere. None where ``x`` is denser."""
    limit = x.numel() * SPARSE_FRACTION
    if (count_true(nonzero) if n_nonzero is None else n_nonzero) <= limit:
        return flat_nonzero(nonzero), None
    if not by_numpy(x):
        return None
    values = x.detach().numpy()
    if not np.isnan(values.min()):  # no NaN (the minimum propagates one): no row to leave out
        return None
    rows = np.isnan(values).any(axis=-1)
    if not rows.any():
        return None
    nonzero.numpy()[rows] = False
    if count_true(nonzero) > limit:
        return None
    return flat_nonzero(nonzero), (torch.from_numpy(rows), torch.from_numpy(values[rows].sum(axis=-1)))


def _nan_where(undefined, sums):
    """``sums`` with the NaN of ``undefined = (rows, nans)`` (``_mostly_zero``) in those rows; None: ``sums``."""
    if undefined is None:
        return sums
    sums[undefined[0]] = undefined[1].to(sums.dtype)
    return sums


def jsd_divergence(p, q):
    """``JSD = KL(p || m)/2 + KL(q || m)/2``, ``m = (p + q)/2``, natural log, over the last axis.

    Both inputs are first rescaled to sum 1, as scipy's ``jensenshannon`` and bpnet-lite do (so a
    pseudocount in ``q`` cancels). A profile summing to 0 gives NaN.

    Parameters
    ----------
    p, q : torch.Tensor, shape=(..., L)
        Non-negative weights, e.g. predicted and observed probabilities.

    Returns
    -------
    jsd : torch.Tensor, shape=(...)
        In [0, ln 2] nats.
    """
    return normalised_jsd_divergence(normalised(p), normalised(q))


def normalised(x):
    """``x / sum_i x_i`` over the last axis."""
    return x / x.sum(dim=-1, keepdim=True)


def normalised_jsd_divergence(p, q):
    """``jsd_divergence`` of profiles already rescaled to sum 1 (``normalised``): ``(KL(p || m) + KL(q || m)) / 2``."""
    lowest = (_lowest(p), _lowest(q))
    positive = tuple(bool(low > 0) for low in lowest)  # (NaN: not known)
    if all(positive):  # no zero on either side: every term, no mask
        return _with_underflowed_midpoints(_dense_jsd(p, q, masked=False), p, q)
    mostly_zero = _mostly_zero_side(p, q, positive)
    if mostly_zero is not None:  # an observed profile, shuffled or not: the same bits from its nonzero positions
        a_lowest = lowest[0] if mostly_zero[0] is p else lowest[1]
        return _with_underflowed_midpoints(_jsd_of_mostly_zero(*mostly_zero, a_lowest=a_lowest), p, q)
    return _with_underflowed_midpoints(_dense_jsd(p, q), p, q)


def _with_underflowed_midpoints(jsd, p, q):
    """``jsd`` with its rows of inf computed again taking ``p_i / m_i = 2`` where ``m_i = (p_i + q_i) / 2`` rounds
    to 0: there ``p_i + q_i`` is the smallest subnormal number (one of them, the other 0), whose half rounds to 0,
    and the term ``p_i ln(p_i / m_i)`` is inf (as in scipy's ``jensenshannon``) where it is ``p_i ln 2``. A
    predicted probability lands there from logits ~103 (float32) or ~745 (float64) below the top one. Profiles
    summing to 1 give no other inf, so every other row keeps its bits."""
    rows = torch.isinf(jsd)
    if not bool(rows.any()):
        return jsd
    a, b = (x[rows] for x in torch.broadcast_tensors(p, q))
    m = (a + b) / 2
    kl = lambda x: torch.sum(x * torch.log(torch.where(x == 0, 1.0, torch.where(m == 0, 2.0, x / m))), dim=-1)
    jsd = jsd.clone()
    jsd[rows] = (kl(a) + kl(b)) / 2
    return jsd


def _dense_jsd(p, q, masked=True):
    """``normalised_jsd_divergence`` term by term over every position; ``masked=False``: of profiles known to hold no
    zero, whose terms need no mask (the same terms)."""
    m = midpoint(p, q)
    kl = kl_divergence if masked else lambda x, m: torch.sum(kl_terms(x, m), dim=-1)
    return (kl(p, m) + kl(q, m)) / 2


def _mostly_zero_side(p, q, positive=(False, False)):
    """``(a, b, support, undefined)`` with ``b`` the one of ``p``, ``q`` that is mostly zero (``_mostly_zero``: its
    nonzero positions and its rows holding a NaN), ``a`` the other; None where neither is, or off the CPU
    (``by_numpy``), or for tensors that are not contiguous and of one shape. ``positive``: whether ``p``, ``q`` are
    known to hold no zero (never mostly zero)."""
    if not (by_numpy(p) and p.shape == q.shape and p.is_contiguous() and q.is_contiguous() and p.numel()):
        return None
    for a, b, no_zero in ((p, q, positive[1]), (q, p, positive[0])):
        mostly_zero = None if no_zero else _mostly_zero(b, nonzero_mask(b))
        if mostly_zero is not None:
            return (a, b, *mostly_zero)
    return None


def _lowest(x):
    """The smallest value of a non-empty CPU tensor (``by_numpy``; NaN where it holds one): one pass, no mask; NaN off
    the CPU or where ``x`` is empty."""
    return float(x.detach().numpy().min()) if by_numpy(x) and x.numel() > 0 else NAN


@lru_cache(maxsize=None)
def _ln2(dtype):
    """``ln 2`` as torch's vectorised ``log`` gives it in ``dtype`` (a Python float)."""
    return float(torch.log(torch.full((64,), 2.0, dtype=dtype))[0])


def _has_inexact_halves(x, lowest=None):
    """Whether some ``x_i > 0`` is below twice the smallest normal number (``x_i / 2`` rounds); a CPU tensor whose
    smallest value is ``lowest`` where known (``_lowest``)."""
    tiny, values = 2 * torch.finfo(x.dtype).tiny, x.detach().numpy()
    if not (values.min() if lowest is None else lowest) < tiny:  # also NaN
        return False
    return bool(((values > 0) & (values < tiny)).any())


def _jsd_of_mostly_zero(a, b, support, undefined=None, a_lowest=None):
    """``normalised_jsd_divergence(a, b)`` from the positions where ``b`` is nonzero (``support``), the same bits; the
    NaN of ``b`` in its rows ``undefined`` (left out of ``support``: ``_mostly_zero``).

    Where ``b_i = 0``, ``m_i = a_i / 2`` exactly and ``a_i / m_i = 2``: ``a``'s term is ``a_i ln 2`` (0 where
    ``a_i = 0``) and ``b``'s is 0. Both KL sums still add a full row of terms in torch's order. Where some
    ``a_i > 0`` is below twice the smallest normal number, ``a_i / 2`` rounds: the dense formula then (``a_lowest``:
    ``a``'s smallest value, where known)."""
    if _has_inexact_halves(a, a_lowest):
        return _dense_jsd(a, b)
    a_s, b_s = take_flat(a, support), take_flat(b, support)
    m_s = midpoint(a_s, b_s)
    a_terms = torch.where(a_s == 0, 0.0, kl_terms(a_s, m_s))
    b_terms = kl_terms(b_s, m_s)
    kl_a = torch.sum(put_flat(a * _ln2(a.dtype), support, a_terms), dim=-1)
    kl_b = torch.sum(put_flat(torch.zeros_like(b), support, b_terms), dim=-1)
    return _nan_where(undefined, (kl_a + kl_b) / 2)


def jsd_distance(p, q, divergence=None):
    """``sqrt(JSD(p, q))``: the Jensen-Shannon distance, as scipy's ``jensenshannon`` (chrombpnet).

    Parameters
    ----------
    p, q : torch.Tensor, shape=(..., L)
    divergence : torch.Tensor, shape=(...), optional
        ``jsd_divergence(p, q)`` when already computed.

    Returns
    -------
    distance : torch.Tensor, shape=(...)
        In [0, sqrt(ln 2)]; NaN where a profile sums to 0.
    """
    divergence = jsd_divergence(p, q) if divergence is None else divergence
    return torch.sqrt(torch.clamp(divergence, min=0.0))


def normalized_jsd(p_pred, p_obs, distance=None, max_distance=None):
    """``clip((d - d_max) / (0 - d_max), 0, 1)``, ``d = jsd_distance(p_pred, p_obs)``, ``d_max = jsd_distance(uniform, p_obs)``.

    chrombpnet's normalised JSD (min-max between the observed profile itself, 0, and the uniform
    profile); higher is better. An exactly uniform observed profile gives 1 if ``d > 0`` and NaN
    if ``d = 0``, as chrombpnet.

    Parameters
    ----------
    p_pred, p_obs : torch.Tensor, shape=(..., L)
    distance : torch.Tensor, shape=(...), optional
        ``jsd_distance(p_pred, p_obs)`` when already computed.
    max_distance : torch.Tensor, shape=(...), optional
        ``d_max`` when already computed.

    Returns
    -------
    score : torch.Tensor, shape=(...)
    """
    d = jsd_distance(p_pred, p_obs) if distance is None else distance
    d_max = jsd_distance(torch.ones_like(p_obs), p_obs) if max_distance is None else max_distance
    return torch.clamp((d - d_max) / (0.0 - d_max), 0.0, 1.0)


# splitmix64's constants (its arithmetic is modulo 2**64: numpy's uint64 and torch's int64 both wrap so).
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _logical_shift(z, bits):
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _signed(value):
    """A residue modulo 2**64 as the signed int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def region_keys(shape, rows, seed=0):
    """splitmix64 of ``(seed, region row, position)``: pseudo-random int64 keys, one per element.

    A region's keys depend only on its global row number, so a shuffle keyed by them is the same
    whatever the batch size, the shard or the device. On the CPU numpy computes them in place as uint64 (4x
    faster than torch's int64 operations; the same bits).

    Parameters
    ----------
    shape : tuple
        ``(B, ...)``; every element of a region gets its own key.
    rows : torch.Tensor, shape=(B,), int64
        Global row numbers of the batch's regions.
    seed : int

    Returns
    -------
    keys : torch.Tensor, shape=shape, int64
    """
    per_region = math.prod(shape[1:])
    salt = (int(seed) + 1) * _GOLDEN % (1 << 64)
    if rows.device.type != "cpu":
        return _region_keys_torch(shape, rows, salt)
    z = rows.numpy().astype(np.uint64).reshape(-1, 1) * np.uint64(per_region)
    z = z + (np.arange(per_region, dtype=np.uint64) + np.uint64(salt))  # one (B, per_region) array, then in place
    shifted = np.empty_like(z)
    for bits, mix in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(z, np.uint64(bits), out=shifted)
        z ^= shifted
        z *= np.uint64(mix)
    np.right_shift(z, np.uint64(31), out=shifted)
    z ^= shifted
    return torch.from_numpy(z.view(np.int64).reshape(shape))


def _region_keys_torch(shape, rows, salt):
    """``region_keys`` with torch's int64 operations (on the device of ``rows``); ``salt``: ``(seed + 1) * golden``
    modulo 2**64."""
    per_region = math.prod(shape[1:])
    within = torch.arange(per_region, device=rows.device).reshape(shape[1:])
    z = rows.reshape(-1, *([1] * (len(shape) - 1))) * per_region + within + _signed(salt)
    z = (z ^ _logical_shift(z, 30)) * _signed(_MIX1)
    z = (z ^ _logical_shift(z, 27)) * _signed(_MIX2)
    return z ^ _logical_shift(z, 31)


def permute_positions(x, generator=None, rows=None, seed=0):
    """``x[..., pi]`` with an independent uniform random permutation ``pi`` of the last axis per row.

    Parameters
    ----------
    x : torch.Tensor, shape=(B, ..., L)
    generator : torch.Generator, optional
        Source of randomness when ``rows`` is not given (any device; the noise is drawn on its
        device, so a CPU generator gives the same permutations for data on any device).
    rows : torch.Tensor, shape=(B,), optional
        Global row numbers: permute by ``region_keys(x.shape, rows, seed)`` instead, so that each
        region's permutation depends only on the seed and its row.
    seed : int
        Seed of the keyed permutations.

    Returns
    -------
    permuted : torch.Tensor, shape=(B, ..., L)
    """
    if rows is not None:  # distinct keys (splitmix64 is a bijection): one sorting order
        order = distinct_order(region_keys(x.shape, rows.to(x.device, torch.int64), seed))
    else:
        device = generator.device if generator is not None else x.device
        order = torch.argsort(torch.rand(x.shape, generator=generator, device=device).to(x.device), dim=-1)
    return torch.gather(x, -1, order)


def keyed_orders(shape, rows, seed=0):
    """The orders ``permute_positions`` takes with ``rows``, for both views of ``(B, S, L)`` regions, from one set
    of keys: the joint view ``(B, S*L)`` and the per-track view ``(B, S, L)`` draw the same key per element
    (``region_keys``).

    Parameters
    ----------
    shape : tuple
        ``(B, S, L)``.
    rows : torch.Tensor, shape=(B,), int64
    seed : int

    Returns
    -------
    joint, per_track : torch.Tensor, shape=(B, S*L) and (B, S, L), int64
        Positions to gather, as ``argsort`` of the keys of each view: one sort of the joint view's keys, which
        taken track by track (``orders_by_track``) orders each track's keys (they are distinct).
    """
    joint = distinct_order(region_keys((shape[0], shape[1] * shape[2]), rows, seed))
    return joint, orders_by_track(joint, shape[1])


def shuffled_jsd_distance(p, observed, generator=None, rows=None, seed=0):
    """``jsd_distance(p, shuffle(k))``: distance to the observed profile with its positions permuted.

    With ``p`` the prediction this is a prediction-vs-shuffled baseline; with ``p`` the observed
    probabilities it is chrombpnet's "shuffled labels vs labels" histogram baseline.

    Parameters
    ----------
    p : torch.Tensor, shape=(..., L)
        Probabilities to compare.
    observed : torch.Tensor, shape=(..., L)
        Observed counts, permuted independently per row.
    generator : torch.Generator, optional
        Fixes the permutation (reproducible).

    Returns
    -------
    distance : torch.Tensor, shape=(...)
    """
    return jsd_distance(p, permute_positions(observed, generator, rows, seed))


def cross_entropy(log_p_pred, p_obs):
    """``H(p_obs, p_pred) = -sum_i p_obs_i ln p_pred_i`` over the last axis, terms with ``p_obs_i = 0`` counted as 0.

    Parameters
    ----------
    log_p_pred : torch.Tensor, shape=(..., L)
        Predicted log probabilities.
    p_obs : torch.Tensor, shape=(..., L)
        Observed probabilities (``observed_probabilities``); NaN propagates.

    Returns
    -------
    cross_entropy : torch.Tensor, shape=(...)
        NaN where ``p_obs`` is all 0 (no counts, even with a pseudocount).
    """
    h = -_sum_of_nonzero_terms(p_obs, (log_p_pred,), torch.mul, lambda: torch.where(p_obs == 0, 0.0, p_obs * log_p_pred))
    return torch.where(torch.sum(p_obs, dim=-1) == 0, NAN, h)


def mnll(log_p_pred, observed, log_factorials=None):
    """``-lgamma(N+1) + sum_i lgamma(k_i+1) - sum_i k_i ln p_i``: the multinomial NLL (seed ``MNLLLoss``).

    Parameters
    ----------
    log_p_pred : torch.Tensor, shape=(..., L)
        Normalised log probabilities.
    observed : torch.Tensor, shape=(..., L)
        Observed counts.
    log_factorials : torch.Tensor, shape=(..., L), optional
        ``log_factorial_terms(observed)`` when already computed.

    Returns
    -------
    nll : torch.Tensor, shape=(...)
        0 for a profile with no counts. The numbers of ``MNLLLoss`` (the same expression), with the terms
        ``lgamma(0 + 1) = 0`` of zero counts not evaluated where most counts are 0.
    """
    log_fact_sum = torch.lgamma(torch.sum(observed, dim=-1) + 1)
    log_prod_fact = torch.sum(log_factorial_terms(observed) if log_factorials is None else log_factorials, dim=-1)
    log_prod_exp = torch.sum(observed * log_p_pred, dim=-1)
    return -log_fact_sum + log_prod_fact - log_prod_exp


def log_factorial_terms(observed):
    """``lgamma(k_i + 1)`` at every position (0 where ``k_i = 0``, not evaluated where most counts are 0): the terms
    that ``mnll`` sums, computed once for the joint view and the per-track one (the same values). float64 read counts
    on the CPU are looked up in ``seed``'s table, which torch's ``lgamma`` wrote: the same bits."""
    if by_numpy(observed) and observed.dtype == torch.float64:
        indices = read_count_indices(observed.detach().numpy())
        if indices is not None:
            return torch.from_numpy(log_factorial_table().take(indices))
    return _nonzero_terms(observed, (), lambda k: torch.lgamma(k + 1), lambda: torch.lgamma(observed + 1))


def mnll_per_base(log_p_pred, observed, nll=None):
    """``MNLL / L`` with L the length of the last axis (basepairmodels, chrombpnet's ``mnll``).

    Parameters
    ----------
    log_p_pred : torch.Tensor, shape=(..., L)
    observed : torch.Tensor, shape=(..., L)
    nll : torch.Tensor, shape=(...), optional
        ``mnll(log_p_pred, observed)`` when already computed.

    Returns
    -------
    nll : torch.Tensor, shape=(...)
    """
    return (mnll(log_p_pred, observed) if nll is None else nll) / log_p_pred.shape[-1]


def profile_pearson(p_pred, observed, zero_variance=NAN):
    """``pearson(p_pred, k)`` over positions; ``zero_variance=0.0`` gives bpnet-lite's convention.

    Parameters
    ----------
    p_pred : torch.Tensor, shape=(..., L)
        Predicted probabilities.
    observed : torch.Tensor, shape=(..., L)
        Observed counts (or probabilities: the correlation is scale-free).
    zero_variance : float
        Value where a variance is 0 (e.g. no counts): NaN, or 0 as bpnet-lite.

    Returns
    -------
    r : torch.Tensor, shape=(...)
    """
    return pearson(p_pred, observed, zero_variance=zero_variance)


def profile_spearman(p_pred, observed, ties="average", zero_variance=NAN, order=None):
    """``pearson(rank(p_pred), rank(k))`` over positions; ``ties="argsort"`` gives bpnet-lite's ranks.

    Parameters
    ----------
    p_pred : torch.Tensor, shape=(..., L)
    observed : torch.Tensor, shape=(..., L)
    ties : {"average", "ordinal", "argsort"}
        Averaged ranks for ties (scipy, default), ordinal ranks (ties by position) or bpnet-lite's
        ``argsort().argsort()`` (torch's tie order, float32 result).
    zero_variance : float
        Value where all ranks tie (averaged ranks of a profile with no counts): NaN by default.
    order : torch.Tensor, shape=(..., L), int64, optional
        A candidate ascending order of ``p_pred``, checked and taken in place of a sort (``spearman``).

    Returns
    -------
    rho : torch.Tensor, shape=(...)
    """
    return spearman(p_pred, observed, ties=ties, zero_variance=zero_variance, order=order)


# ----------------------------------------------------------------------------------------------
# The batch entry point

# Options reproducing a peer's per-region numbers (keyword arguments of ``profile_metrics``; the same as
# ``presets.PRESETS`` gives ``score --preset``).
PROFILE_PRESETS = {
    "default": {},
    "bpnet-lite": {"pearson_zero_variance": 0.0, "spearman_ties": "argsort", "float32_results": True},
    "chrombpnet": {"pseudocount": 0.001},
}


def _view_metrics(names, log_p, observed, shape_observed, settings):
    """The requested metrics of one view (joint or per track), each reducing the last axis. Shared parts are
    computed once: the JSD divergence (its root is the distance, which the normalised JSD rescales), each
    profile rescaled to sum 1 for the four JSDs, and the permuted observed profile of both shuffled baselines."""
    p = torch.exp(log_p)
    q = observed_probabilities(shape_observed, settings["pseudocount"])
    shared = {}

    def once(key, make):
        if key not in shared:
            shared[key] = make()
        return shared[key]

    # each profile rescaled to sum 1 once, for every JSD it enters (as jsd_divergence rescales it)
    unit = {"p": lambda: normalised(p), "q": lambda: normalised(q),
            "uniform": lambda: normalised(torch.ones_like(q)),
            "permuted": lambda: normalised(settings["permute"](shape_observed))}

    rescaled = lambda key: once(key, unit[key])

    def jsd_to(a, b):
        """``jsd_distance`` between two of the rescaled profiles."""
        return jsd_distance(rescaled(a), rescaled(b), normalised_jsd_divergence(rescaled(a), rescaled(b)))

    def spearman_order():
        """The order of ``p`` that ``settings["order"]`` gives the Spearman correlation where it sorts ``p`` once."""
        return settings["order"](p) if sorts_once(p, shape_observed, settings["spearman_ties"]) else None

    nll = lambda: once("mnll", lambda: mnll(log_p, observed, settings["log_factorials"]()))
    divergence = lambda: once("divergence", lambda: normalised_jsd_divergence(rescaled("p"), rescaled("q")))
    distance = lambda: once("distance", lambda: jsd_distance(p, q, divergence()))
    formulas = {
        "profile_mnll": nll,
        "profile_mnll_per_base": lambda: mnll_per_base(log_p, observed, nll()),
        "profile_cross_entropy": lambda: cross_entropy(log_p, q),
        "profile_jsd_divergence": divergence,
        "profile_jsd_distance": distance,
        "profile_norm_jsd": lambda: normalized_jsd(p, q, distance(), jsd_to("uniform", "q")),
        "profile_pearson": lambda: profile_pearson(p, shape_observed, settings["pearson_zero_variance"]),
        "profile_spearman": lambda: profile_spearman(p, shape_observed, settings["spearman_ties"],
                                                     order=spearman_order()),
        "profile_jsd_shuffled": lambda: jsd_to("p", "permuted"),
        "profile_jsd_observed_shuffled": lambda: jsd_to("q", "permuted"),
    }
    return {name: formulas[name]() for name in names if name in formulas}


def _auprc_metrics(names, probs, observed, settings, per_track=True):
    """Per-region binned auPRC, joint (strands pooled) ``(B,)`` and, with ``per_track``, per track ``(B, S)``; NaN off
    the mask (only the regions on it are computed)."""
    joint, track = {}, {}
    rows = flat_nonzero(auprc_region_mask(observed, settings["auprc_min_counts"], settings["auprc_pos_min"]))
    binsizes = [binsize for binsize in BIN_SIZES if f"profile_auprc_bin{binsize}" in names]
    binned = binned_labels_scores_by_size(observed[rows], probs[rows], binsizes, settings["auprc_pos_min"],
                                          settings["auprc_neg_max"])
    for binsize, (labels, scores) in binned.items():
        name = f"profile_auprc_bin{binsize}"
        joint[name] = probs.new_full(probs.shape[:1], NAN).index_copy_(
            0, rows, average_precision(flatten_tracks(labels), flatten_tracks(scores)))
        if per_track:
            track[name] = probs.new_full(probs.shape[:2], NAN).index_copy_(0, rows, average_precision(labels, scores))
    return joint, track


def profile_metrics(logits, observed, names=PROFILE_METRICS_DEFAULT, track_names=None, per_track=None, *,
                    pseudocount=0.0, pearson_zero_variance=NAN, spearman_ties="average",
                    float32_results=False, smooth_predictions=False, smooth_observed=False, sigma=DEFAULT_SIGMA,
                    width=DEFAULT_WIDTH, generator=None, seed=0, rows=None,
                    auprc_pos_min=POS_MIN_FRACTION, auprc_neg_max=NEG_MAX_FRACTION,
                    auprc_min_counts=REQUIRED_MIN_POS_COUNTS, piece_rows=None):
    """Per-region profile metrics of a batch, from one joint and one per-track ``log_softmax``.

    Joint columns (``name``) treat the S*L positions of a region as one distribution (joint
    softmax, as the training loss); per-track columns (``name_<track>``) use a softmax over each
    track's L positions (as bpnet-lite's evaluation).

    Parameters
    ----------
    logits : torch.Tensor, shape=(B, S, L)
        Predicted logits; need not be normalised.
    observed : torch.Tensor, shape=(B, S, L)
        Observed counts.
    names : sequence of str
        Metric names from ``PROFILE_METRICS_ALL``; default ``PROFILE_METRICS_DEFAULT``.
    track_names : sequence of str, optional
        Suffixes of the per-track columns; default ``track0 .. track{S-1}``.
    per_track : bool, optional
        Also return per-track columns; default: only when S > 1.
    pseudocount : float
        Of the observed probabilities ``k / (pseudocount + N)`` (chrombpnet 0.001; it cancels in
        the JSD columns, which renormalise, and scales the cross-entropy by ``N / (N + pc)``).
    pearson_zero_variance : float
        Profile Pearson where a variance is 0: NaN, or 0 as bpnet-lite.
    spearman_ties : {"average", "ordinal", "argsort"}
        Spearman ranks: averaged ties (scipy), ordinal (ties by position) or bpnet-lite's
        ``argsort().argsort()`` (torch's tie order).
    float32_results : bool
        Round every column to float32 (bpnet-lite stores its profile measures in a float32 tensor
        whatever the input dtype); the computation itself keeps the inputs' dtype.
    smooth_predictions, smooth_observed : bool
        Gaussian-smooth (``sigma``, ``width``) the predicted probabilities and/or the observed
        profile along positions before comparing, as bpnet-lite. Smoothed predictions enter the
        MNLL and cross-entropy as ``ln`` of the smoothed probabilities (not renormalised, as
        bpnet-lite); the MNLL and auPRC always use the raw observed counts; auPRC never smooths.
    sigma, width : float, int
        Smoothing kernel (bpnet-lite 7, 81).
    generator : torch.Generator, optional
        Randomness of the shuffled baselines; pass one generator for the whole run. Default: a
        CPU generator seeded with ``seed`` (so every call permutes alike: reproducible).
    seed : int
        Seed of the default generator, and of the keyed permutations when ``rows`` is given.
    rows : torch.Tensor, shape=(B,), optional
        Global row numbers of the batch's regions: the shuffled baselines then permute each region
        by ``region_keys`` (same result whatever the batch size, shard or device); ``generator`` is
        not used.
    auprc_pos_min, auprc_neg_max, auprc_min_counts : float
        BPNet's auPRC thresholds; regions failing ``auprc_region_mask`` get NaN auPRC.
    piece_rows : int, optional
        Regions computed at a time (the numbers are the same whatever it is); default ``chunk_rows``: cache-sized.

    Returns
    -------
    columns : dict of str to torch.Tensor, each shape=(B,)
        In the order of ``names``, each joint column followed by its per-track columns.
    """
    unknown = sorted(set(names) - set(PROFILE_METRICS_ALL))
    if unknown:
        raise ValueError(f"unknown profile metrics {unknown}; known: {list(PROFILE_METRICS_ALL)}")
    options = {"pseudocount": pseudocount, "pearson_zero_variance": pearson_zero_variance,
               "spearman_ties": spearman_ties, "float32_results": float32_results,
               "smooth_predictions": smooth_predictions, "smooth_observed": smooth_observed, "sigma": sigma,
               "width": width, "generator": generator, "seed": seed, "auprc_pos_min": auprc_pos_min,
               "auprc_neg_max": auprc_neg_max, "auprc_min_counts": auprc_min_counts}
    step = piece_rows or chunk_rows(logits.shape, logits.device)
    shuffles_drawn = rows is None and any("shuffled" in name for name in names)
    if logits.shape[0] <= step or shuffles_drawn:
        return _profile_metrics(logits, observed, names, track_names, per_track, rows=rows, **options)
    parts = [_profile_metrics(logits[i:i + step], observed[i:i + step], names, track_names, per_track,
                              rows=None if rows is None else rows[i:i + step], **options)
             for i in range(0, logits.shape[0], step)]
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


# Regions per piece of a batch: every metric is per region, and its dozen element-wise passes run several
# times faster on the CPU over pieces of about this many values (1 MB in float64: cache-sized) than over a whole
# batch.
CHUNK_VALUES = 1 << 17
# Off the CPU (a GPU), pieces of up to this many values (32 MB in float64; a default batch of 1024 x 2 x 1000 is
# one piece): every piece costs a few hundred kernel launches and host synchronisations whatever its size. With the
# CPU's pieces (~16 per default batch), `--metrics all` on 20k regions on an H200 took 4.2 s in one process with
# torch imported, of which 0.9 s were kernels (torch.profiler: ~1,200 sums per batch, most a few microseconds).
DEVICE_CHUNK_VALUES = 1 << 22


def chunk_rows(shape, device=None):
    """Regions per piece of a ``(B, S, L)`` batch (at least 1): cache-sized on the CPU (``device`` None or a CPU),
    larger elsewhere."""
    values = CHUNK_VALUES if device is None or torch.device(device).type == "cpu" else DEVICE_CHUNK_VALUES
    return max(1, values // max(1, math.prod(shape[1:])))


def _permutations(shape, generator, rows, seed):
    """``permute_positions`` of the joint ``(B, S*L)`` and the per-track ``(B, S, L)`` view (functions of the
    profile to permute); with ``rows``, both orders come from one set of keys (``keyed_orders``), made on
    first use."""
    if rows is None:
        return (lambda x: permute_positions(x, generator)), (lambda x: permute_positions(x, generator))
    orders = []

    def permute(x, view):
        if not orders:
            orders.extend(keyed_orders(shape, rows.to(x.device, torch.int64), seed))
        return torch.gather(x, -1, orders[view])

    return (lambda x: permute(x, 0)), (lambda x: permute(x, 1))


def _profile_metrics(logits, observed, names, track_names, per_track, *, pseudocount, pearson_zero_variance,
                     spearman_ties, float32_results, smooth_predictions, smooth_observed, sigma, width, generator,
                     seed, rows, auprc_pos_min, auprc_neg_max, auprc_min_counts):
    """``profile_metrics`` of one piece of a batch (arguments as there)."""
    n_tracks = logits.shape[1]
    track_names = [f"track{s}" for s in range(n_tracks)] if track_names is None else list(track_names)
    if len(track_names) != n_tracks:
        raise ValueError(f"{len(track_names)} track names for {n_tracks} tracks")
    per_track = n_tracks > 1 if per_track is None else per_track
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    settings = {"pseudocount": pseudocount, "pearson_zero_variance": pearson_zero_variance,
                "spearman_ties": spearman_ties, "auprc_pos_min": auprc_pos_min,
                "auprc_neg_max": auprc_neg_max, "auprc_min_counts": auprc_min_counts}
    joint_permute, track_permute = _permutations(logits.shape, generator, rows, seed)

    log_p_joint = joint_log_softmax(logits)
    log_p_track = torch.log_softmax(logits, dim=-1)
    raw_log_p_track = log_p_track
    shape_observed = smooth_gaussian1d(observed, sigma, width) if smooth_observed else observed
    if smooth_predictions:
        log_p_joint, log_p_track = (torch.log(smooth_gaussian1d(torch.exp(v), sigma, width))
                                    for v in (log_p_joint, log_p_track))

    # the joint view's Spearman sorts its probabilities; taken track by track, that order sorts (or nearly) each
    # track's probabilities, which rise and fall with the joint ones: the per-track view's Spearman checks and takes it
    orders = {}

    def joint_order(p):
        orders["joint"] = any_order(p)
        return orders["joint"]

    def track_order(_p):
        return orders_by_track(orders["joint"], n_tracks) if "joint" in orders else None

    # both views' MNLL sum the same terms of the counts (joint: each region's tracks end to end)
    log_factorials = lru_cache(maxsize=None)(lambda: log_factorial_terms(observed))

    columns = _view_metrics(names, flatten_tracks(log_p_joint), flatten_tracks(observed), flatten_tracks(shape_observed),
                            {**settings, "permute": joint_permute, "order": joint_order,
                             "log_factorials": lambda: flatten_tracks(log_factorials())})
    track_columns = (_view_metrics(names, log_p_track, observed, shape_observed,
                                   {**settings, "permute": track_permute, "order": track_order,
                                    "log_factorials": log_factorials})
                     if per_track else {})
    if any(name.startswith("profile_auprc_") for name in names):
        auprc_joint, auprc_track = _auprc_metrics(names, torch.exp(raw_log_p_track), observed, settings, per_track)
        columns.update(auprc_joint)
        track_columns.update(auprc_track)
    out = {}
    if float32_results:
        columns = {name: value.to(torch.float32) for name, value in columns.items()}
        track_columns = {name: value.to(torch.float32) for name, value in track_columns.items()}
    for name in names:
        out[name] = columns[name]
        if name in track_columns:
            out.update({f"{name}_{track}": track_columns[name][:, s] for s, track in enumerate(track_names)})
    return out
