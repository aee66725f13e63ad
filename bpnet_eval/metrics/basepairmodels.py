"""basepairmodels' per-region profile metrics (``basepairmodels.cli.predict.metrics_update``, version 0.3.1).

For one region and track with observed counts ``k`` (length ``L``), predicted probabilities ``p`` and predicted
log count ``c``, where ``sum k != 0`` and the predicted total ``e^c - 1 != 0`` (else every value is 0, as its
arrays are initialised):

- ``q = g(k) / sum g(k)``, ``g`` a Gaussian filter (sigma 7, truncated to 81 taps, ``reflect`` edges: scipy's
  ``gaussian_filter1d``); ``p'`` = ``p`` with its sum's excess taken from its largest (or added to its smallest)
  value (``_fix_sum_to_one``);
- ``mnll = norm(-logpmf(k; sum k, p') / L)`` (scipy's multinomial, which replaces the last probability by one
  minus the others; NaN → 0, inf → the largest float), bounds ``p'`` = fixed ``k / sum k`` (NaN or inf → 0) and
  uniform; ``cross_entropy = norm(-sum (k / sum k) ln(p' + 1e-7))``, bounds ``k / sum k`` and uniform;
  ``jsd = norm(jensenshannon(q, p'))``, bounds 0 and ``jensenshannon(k / sum k, uniform)``;
  ``norm(v) = clip((v - min) / (max - min), 0, 1)``, 1 where ``max = min``;
- ``pearson``, ``spearman`` of ``(q, p')`` (averaged ranks), 0 where either is constant;
- ``mse = mean (k - p (e^c - 1))^2``.
"""

from functools import lru_cache

import numpy as np
import torch

from ..seed import row_blocks
from .correlation import pearson, spearman
from .profile import log_factorial_terms

SIGMA, WIDTH = 7.0, 81
# Rows filtered at a time: a block of rows and its padded copy stay in the CPU cache through the kernel's 41 passes.
FILTER_BLOCK_VALUES = 1 << 16
# Values of the regions whose metrics are computed together (their arrays' many passes stay in the cache: 17% faster
# than a 1,024-region batch at once).
METRIC_BLOCK_VALUES = 1 << 17
BASEPAIRMODELS_METRICS = ("mnll", "cross_entropy", "jsd", "mse", "pearson", "spearman")


def gaussian_filter_reflect(x: np.ndarray, sigma: float = SIGMA, width: int = WIDTH) -> np.ndarray:
    """scipy's ``gaussian_filter1d(x, sigma, truncate=((width - 1)/2 - 0.5)/sigma)`` along the last axis, ``reflect``
    edges (``d c b a | a b c d | d c b a``).

    Parameters
    ----------
    x : numpy.ndarray, shape=(..., L)
    sigma : float
    width : int

    Returns
    -------
    y : numpy.ndarray, shape=(..., L)
    """
    truncate = (((width - 1) / 2) - 0.5) / sigma
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets ** 2)  # scipy's _gaussian_kernel1d, to the last bit
    weights = weights / weights.sum()
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1]) if x.size else x.reshape(0, x.shape[-1])
    out = np.empty(rows.shape)
    for block in row_blocks(rows, FILTER_BLOCK_VALUES):
        _correlate_reflect(rows[block], weights, radius, out[block])
    return out.reshape(x.shape)


def _correlate_reflect(x: np.ndarray, weights: np.ndarray, radius: int, out: np.ndarray) -> None:
    """``gaussian_filter_reflect`` of rows ``x`` ``(m, L)`` into ``out``, with the kernel's ``weights`` (``2 radius + 1``)."""
    length = x.shape[-1]
    reps = -(-radius // length) if length else 0
    padded = x
    for _ in range(max(reps, 1)):  # reflect again where the radius exceeds L
        padded = np.concatenate([padded[:, :length][:, ::-1], padded, padded[:, -length:][:, ::-1]], axis=-1)
    start = (padded.shape[-1] - length) // 2
    # scipy's correlate1d for a symmetric kernel, in its order: x_i w_0, then (x_{i-j} + x_{i+j}) w_j, j = r..1
    np.multiply(padded[:, start:start + length], weights[radius], out=out)
    pair = np.empty_like(out)
    for j in range(radius, 0, -1):
        np.add(padded[:, start - j:start - j + length], padded[:, start + j:start + j + length], out=pair)
        pair *= weights[radius - j]
        out += pair


def fix_sum_to_one(p: np.ndarray) -> np.ndarray:
    """basepairmodels' ``_fix_sum_to_one`` per row: ``sum - 1`` taken from the first largest value when the sum is
    above 1, then ``1 - sum`` added to the first smallest when below."""
    p = np.array(p, dtype=np.float64, copy=True)
    rows = np.arange(p.shape[0])
    total = p.sum(axis=-1)
    over = total > 1.0
    top = p.argmax(axis=-1)
    p[rows[over], top[over]] -= total[over] - 1.0
    total = p.sum(axis=-1)
    under = total < 1.0
    low = p.argmin(axis=-1)
    p[rows[under], low[under]] += 1.0 - total[under]
    return p


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))


def multinomial_coefficient(k: np.ndarray) -> np.ndarray:
    """``ln (N! / prod_i k_i!) = lgamma(N + 1) - sum_i lgamma(k_i + 1)`` per row, ``N = sum_i k_i`` (scipy's
    ``multinomial``, its lgamma torch's: the terms from ``log_factorial_terms``, the same bits)."""
    terms = log_factorial_terms(torch.from_numpy(k)).numpy()
    return torch.lgamma(torch.from_numpy(k.sum(axis=-1) + 1)).numpy() - terms.sum(axis=-1)


def multinomial_mnll(k: np.ndarray, p: np.ndarray, coefficient=None) -> np.ndarray:
    """``-logpmf(k; sum k, p) / L`` per row as scipy's ``multinomial`` computes it (scipy 1.17, which made the
    fixture): the last probability replaced by one minus the others where a row's sum is more than ``10 eps`` from
    1 (older scipy always replaced it), NaN where a probability is then outside [0, 1]. ``coefficient``:
    ``multinomial_coefficient(k)``, when already computed."""
    p = np.array(p, dtype=np.float64, copy=True)
    adjusted = np.abs(1 - p.sum(axis=-1)) > np.finfo(np.float64).eps * 10
    p[adjusted, -1] = 1.0 - p[adjusted, :-1].sum(axis=-1)
    coef = multinomial_coefficient(k) if coefficient is None else coefficient
    logpmf = coef + _xlogy(k, p).sum(axis=-1)
    invalid = np.any(p < 0, axis=-1) | np.any(p > 1, axis=-1)
    return np.where(invalid, np.nan, -logpmf / k.shape[-1])


def jensenshannon_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scipy's ``jensenshannon`` (natural log) per row: both rows rescaled to sum 1."""
    a = a / a.sum(axis=-1, keepdims=True)
    b = b / b.sum(axis=-1, keepdims=True)
    m = (a + b) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(a > 0, a * np.log(a / m), np.where(a == 0, 0.0, np.inf))
        right = np.where(b > 0, b * np.log(b / m), np.where(b == 0, 0.0, np.inf))
    return np.sqrt((left.sum(axis=-1) + right.sum(axis=-1)) / 2.0)


def jensenshannon_rows_to_uniform(a: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """``jensenshannon_rows(a, uniform)`` (``uniform``: rows of one value) of non-negative rows ``a`` with finite
    positive sums, the same bits from ``a``'s nonzero positions: where ``a_i = 0``, ``m_i = b_i / 2`` exactly, so
    ``a``'s term is 0 and the uniform's is ``b_i ln 2`` (``ln 2`` as numpy's vectorised ``log`` gives it); each sum
    still adds a full row of terms in numpy's order. Rows of observed counts are mostly zero: 2-3x less time than
    every term. Other rows (a NaN, an inf, a negative value, a sum of 0 or inf): every term."""
    totals = a.sum(axis=-1)
    if a.size == 0 or not (np.isfinite(totals).all() and (totals > 0).all() and a.min() >= 0):
        return jensenshannon_rows(a, uniform)
    n, length = a.shape
    flat = a.reshape(-1)
    where = np.flatnonzero(flat)
    b = (uniform[:1] / uniform[:1].sum(axis=-1, keepdims=True))[0, 0]  # every value of every row's rescaled uniform
    rescaled = flat[where] / totals[where // length]
    m = (rescaled + b) / 2
    left, right = np.zeros(a.size), np.full(a.size, b * _log_of_two())
    with np.errstate(divide="ignore", invalid="ignore"):
        left[where] = np.where(rescaled > 0, rescaled * np.log(rescaled / m), 0.0)  # (0: a value that underflowed)
        right[where] = b * np.log(b / m)
    return np.sqrt((left.reshape(n, length).sum(axis=-1) + right.reshape(n, length).sum(axis=-1)) / 2.0)


@lru_cache(maxsize=None)
def _log_of_two() -> float:
    """``ln 2`` as numpy's vectorised ``log`` gives it."""
    return float(np.log(np.full(64, 2.0))[0])


def min_max_normalize(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``clip((v - min) / (max - min), 0, 1)``, 1 where ``max = min`` (NaN stays NaN, as its comparisons leave it; a
    quotient that overflows, over a subnormal ``max - min``, clips to 1 as well)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        norm = (value - low) / (high - low)
    norm = np.where(norm < 0, 0.0, np.where(norm > 1, 1.0, norm))
    return np.where(high - low == 0, 1.0, norm)


def _constant(x: np.ndarray) -> np.ndarray:
    return x.max(axis=-1) == x.min(axis=-1)


def basepairmodels_metrics(probs: np.ndarray, logcounts: np.ndarray, observed: np.ndarray) -> dict:
    """basepairmodels' per-region metrics (module docstring) of ``n`` profiles of one track.

    Parameters
    ----------
    probs : numpy.ndarray, shape=(n, L)
        Predicted probabilities (a softmax).
    logcounts : numpy.ndarray, shape=(n,)
        Predicted log counts ``c`` (``e^c - 1`` predicted reads).
    observed : numpy.ndarray, shape=(n, L)
        Observed counts.

    Returns
    -------
    metrics : dict of str to numpy.ndarray, each shape=(n,)
        ``mnll``, ``cross_entropy``, ``jsd``, ``mse``, ``pearson``, ``spearman``; 0 where not computed.
    """
    probs, observed = np.asarray(probs, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    logcounts = np.asarray(logcounts, dtype=np.float64)
    out = {name: np.zeros(len(observed)) for name in BASEPAIRMODELS_METRICS}
    for rows in row_blocks(observed, METRIC_BLOCK_VALUES):  # each region's metrics its own: blocks that stay in cache
        for name, values in _block_metrics(probs[rows], logcounts[rows], observed[rows]).items():
            out[name][rows] = values
    return out


def _block_metrics(probs: np.ndarray, logcounts: np.ndarray, observed: np.ndarray) -> dict:
    """``basepairmodels_metrics`` of a block of regions."""
    n, length = observed.shape
    out = {name: np.zeros(n) for name in BASEPAIRMODELS_METRICS}
    predicted = probs * np.expm1(logcounts)[:, None]
    rows = (observed.sum(axis=-1) != 0) & (predicted.sum(axis=-1) != 0)
    if not rows.any():
        return out
    k, v = observed[rows], predicted[rows]
    smooth = gaussian_filter_reflect(k)
    q = smooth / smooth.sum(axis=-1, keepdims=True)
    fixed = fix_sum_to_one(v / v.sum(axis=-1, keepdims=True))
    uniform = np.full_like(k, 1.0 / length)
    own = k / k.sum(axis=-1, keepdims=True)
    constant = _constant(q) | _constant(fixed)
    tq, tf = torch.from_numpy(q), torch.from_numpy(fixed)
    out["pearson"][rows] = np.where(constant, 0.0, pearson(tq, tf).numpy())
    # (the prediction's ranks first: its values are all nonzero, the smoothed counts' often not, and the second
    # argument is ranked from its nonzero values alone; the same number either way)
    out["spearman"][rows] = np.where(constant, 0.0, spearman(tf, tq).numpy())
    coefficient = multinomial_coefficient(k)
    mnll = np.nan_to_num(multinomial_mnll(k, fixed, coefficient))
    low = multinomial_mnll(k, fix_sum_to_one(own), coefficient)
    low = np.where(np.isfinite(low), low, 0.0)
    out["mnll"][rows] = min_max_normalize(mnll, low, multinomial_mnll(k, uniform, coefficient))

    def cross_entropy(probabilities):
        return -np.sum(own * np.log(probabilities + 1e-7), axis=-1)

    out["cross_entropy"][rows] = min_max_normalize(cross_entropy(fixed), cross_entropy(own), cross_entropy(uniform))
    out["jsd"][rows] = min_max_normalize(jensenshannon_rows(q, fixed), np.zeros(len(k)),
                                         jensenshannon_rows_to_uniform(own, uniform))
    out["mse"][rows] = np.mean(np.square(k - v), axis=-1)
    return out
