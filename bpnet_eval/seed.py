"""The seed losses per region in float64 numpy on the CPU, with no torch import.

What ``score`` computes on a CPU: the joint and per-track MNLL from one ``logsumexp`` per track and sums
over the nonzero counts (over every position for a region's track with counts on most bases; no
log-probability array is formed), the count loss and the mixture loss. A run that needs nothing beyond them and the
pooled auPRC (the default metrics or ``--preset bpnet``, ``--dtype float64``, on a CPU) never imports torch
(``SeedComputer``, with ``metrics.pooled``); the torch path (``bpnet_eval.losses``, ``bpnet_eval.compute``) takes
the same numbers from here on the CPU in float64, so both give the same bits. The formulas that only combine per-region
sums (``mnll_from_sums``, ``log1p_squared_error``, ``seed_columns``) take numpy arrays or torch tensors.
"""

import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from .lgamma import lgamma

# Regions converted and reduced at a time by torch on the CPU (``losses.track_logsumexp``): small enough for the
# cache, which makes the dtype conversion and the logsumexp about 4x faster than on a whole batch.
CPU_CHUNK_REGIONS = 128
# Values converted and reduced at a time by numpy: blocks of rows that stay in the CPU cache (a chip batch's float64
# logsumexp: 8.4 ms in blocks of 64k values, 9.6 ms in blocks of 128 regions, 256k values; the dense count sums:
# 3.1 ms in blocks of 32k values, 4.9 ms in blocks of 256 rows).
LOGSUMEXP_BLOCK_VALUES = 1 << 16
DENSE_BLOCK_VALUES = 1 << 15
LGAMMA_JOINED_BLOCKS = 4  # blocks of non-integer counts whose lgamma is computed together (32k values: 18.6 ms a
                          # densefloat batch; 128k: 13.6 ms; 512k: 30 ms, out of cache)


def row_blocks(x: np.ndarray, values: int) -> list:
    """Slices of the first axis of ``x`` holding about ``values`` values each (at least one row each)."""
    step = max(1, values // max(1, x[:1].size))
    return [slice(a, a + step) for a in range(0, x.shape[0], step)]

# A track whose |logsumexp| exceeds this is shifted by its largest logit before the MNLL's sums:
# ``sum_i k_i z_i - N lse`` cancels catastrophically when ``lse`` is large (an offset of 1e12 on every logit
# lost 5 digits), while ``sum_i k_i (z_i - max) - N (lse - max)`` adds terms of one sign. Below it nothing is
# shifted: the cancellation costs at most ``2^-52 * 2 * N * 1024``.
SHIFT_ABOVE = 1024.0

COUNT_LOSS_COLUMNS = {"log1p": "count_log1p_mse", "log": "count_log_mse"}

# The MNLL's count sums of a region's track go over every position where more than this share of its counts is
# nonzero (dense tracks: background on every base), else over the nonzero ones: about where the two cost the same.
# Decided row by row, so that a region's numbers never depend on the regions batched with it.
DENSE_ABOVE = 0.3
# A batch whose rows are dense up to this share is value-screened from its nonzero counts and its dense rows' values
# (``CountTerms.every_nonzero``); above it, from the batch itself.
SCREENED_DENSE = 0.25
# A batch with at most this share of nonzero counts finds them all at once and counts each row's from where they
# fall (its dense rows' are then left out); above it, its dense rows are found first, row by row, and skipped.
FEW_NONZERO = 0.15

# lgamma(k + 1) for k = 0 .. 16383, correctly rounded (written by torch.lgamma; tests/test_seed.py checks it
# against 40-digit mpmath): math.lgamma is off by up to 7e-12 there.
LOG_FACTORIAL_FILE = Path(__file__).with_name("log_factorials.npy")


def array_namespace(x):
    """``numpy`` for numpy arrays and scalars, else ``torch`` (already imported: ``x`` is one of its tensors)."""
    return np if isinstance(x, (np.ndarray, np.generic, float, int)) else sys.modules["torch"]


def float64_logsumexp(values: np.ndarray) -> np.ndarray:
    """``logsumexp`` over the last axis in float64: ``m + ln sum_i exp(z_i - m)``, ``m = max_i z_i`` (0 where ``m``
    is not finite, so that -inf, +inf and NaN come out as torch's ``logsumexp`` gives them).

    Parameters
    ----------
    values : numpy.ndarray, shape=(..., L)
        Any float dtype (converted to float64 first).

    Returns
    -------
    lse : numpy.ndarray, shape=(...), float64
    """
    return logsumexp_and_finite(values)[0]


def logsumexp_and_finite(values: np.ndarray, finite: bool = False):
    """``(float64_logsumexp(values), every value finite)`` over the last axis; the second (from the largest and the
    smallest value, in the same pass over the float64 copy) only with ``finite``, else None."""
    wide = values.astype(np.float64)
    top = wide.max(axis=-1, keepdims=True) if wide.shape[-1] else np.zeros(wide.shape[:-1] + (1,))
    every_finite = None
    if finite:
        every_finite = np.isfinite(top[..., 0]) & (wide.min(axis=-1) > -np.inf if wide.shape[-1] else True)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(over="ignore"):  # z - m below -max float: -inf, whose exp is 0 (as torch, silently)
        np.subtract(wide, top, out=wide)
    np.exp(wide, out=wide)
    with np.errstate(divide="ignore"):  # an all -inf row: ln 0 = -inf, as torch
        return np.log(wide.sum(axis=-1)) + top[..., 0], every_finite


class LogitTerms(NamedTuple):
    """What the MNLL needs from the logits alone (``logit_terms``): ``lse_s = shift + rest`` per track, and
    whether each region's logits are all finite."""

    shift: np.ndarray   # (n, S) float64
    rest: np.ndarray    # (n, S) float64
    finite: np.ndarray  # (n,) bool


def logit_terms(logits: np.ndarray) -> LogitTerms:
    """``shifted_logsumexp(logits)`` and each region's logits all finite (one pass over the logits for both)."""
    shift, rest, finite = shifted_logsumexp(logits, finite=True)
    return LogitTerms(shift, rest, finite.all(axis=-1))


def shifted_logsumexp(logits: np.ndarray, finite: bool = False):
    """``lse_s = shift_s + rest_s`` per track in float64, over cache-sized blocks of regions.

    ``shift_s`` is 0 where ``|lse_s| <= SHIFT_ABOVE`` (``rest_s`` is then ``logsumexp_i z_si`` itself), else the
    track's largest logit, with ``rest_s = logsumexp_i (z_si - shift_s)`` in ``[0, ln L]``: the pair keeps every
    digit of ``lse_s - shift_s`` however large the logits are.

    Parameters
    ----------
    logits : numpy.ndarray, shape=(n, S, L)
        As stored (float32 is converted chunk by chunk, never as a whole batch).
    finite : bool
        Also return whether each track's logits are all finite.

    Returns
    -------
    shift, rest : numpy.ndarray, each shape=(n, S), float64
    every_finite : numpy.ndarray, shape=(n, S), bool
        Only with ``finite``.
    """
    parts = [logsumexp_and_finite(logits[rows], finite) for rows in row_blocks(logits, LOGSUMEXP_BLOCK_VALUES)]
    rest = np.concatenate([part[0] for part in parts]) if parts else np.zeros(logits.shape[:-1])
    shift = np.zeros_like(rest)
    large = np.abs(rest) > SHIFT_ABOVE  # NaN (non-finite logits) is never large: it stays NaN
    if large.any():  # rare: those regions again, each track shifted by its largest logit
        rows = np.flatnonzero(large.any(axis=-1))
        wide = logits[rows].astype(np.float64)
        top = wide.max(axis=-1)
        chosen = large[rows]
        shift[rows] = np.where(chosen, top, 0.0)
        # logits at both ends of float64: -inf, reported as an overflow; +inf logits (whose region the value screen
        # reports or skips): NaN
        with np.errstate(over="ignore", invalid="ignore"):
            rest[rows] = np.where(chosen, float64_logsumexp(wide - top[..., None]), rest[rows])
    if not finite:
        return shift, rest
    every_finite = np.concatenate([part[1] for part in parts]) if parts else np.ones(logits.shape[:-1], bool)
    return shift, rest, every_finite


@lru_cache(maxsize=1)
def log_factorial_table() -> np.ndarray:
    """``lgamma(k + 1)`` of ``k = 0, 1, ...`` as far as the table goes (``LOG_FACTORIAL_FILE``)."""
    return np.load(LOG_FACTORIAL_FILE)


def log_factorial(counts: np.ndarray) -> np.ndarray:
    """``lgamma(k + 1)`` of float64 counts: looked up for integers in the table (read counts), else computed
    (``lgamma``: normalised, non-integer tracks and counts beyond the table), the same for every value whatever
    the others, without torch."""
    counts = np.asarray(counts, dtype=np.float64)
    table = log_factorial_table()
    with np.errstate(invalid="ignore"):  # NaN: not a read count
        small = (counts >= 0) & (counts < len(table)) & (counts == np.floor(counts))
    if small.all():  # every one a read count
        return table.take(counts.astype(np.intp))
    if not small.any():  # (callers send read counts to the table themselves: this is the usual case here)
        return lgamma(counts + 1)
    out = np.empty_like(counts)
    out[small] = table[counts[small].astype(np.intp)]
    out[~small] = lgamma(counts[~small] + 1)
    return out


class CountTerms(NamedTuple):
    """What the MNLL needs from a batch's counts alone (``count_terms``), over its rows ``(n * S, L)``: the nonzero counts
    of its sparse rows, which rows are dense (counts on most positions: summed over every position), and each row's
    ``N = sum_i k_i`` and ``sum_i lgamma(k_i + 1)``."""

    where: np.ndarray   # flat positions of the sparse rows' nonzero counts, ascending
    first: np.ndarray   # (n * S,) each row's first entry in ``where`` (its entries: where[first[r]:first[r + 1]])
    counts: np.ndarray  # the counts at ``where``, float64
    dense: np.ndarray   # (n * S,) bool
    totals: np.ndarray  # (n * S,) float64
    log_factorials: np.ndarray  # (n * S,) float64
    dense_read_counts: bool = False  # every value of the dense rows is a read count (``read_count_indices``)
    read_counts: bool = False  # every count of the batch is a read count: ``totals`` exact, in any order of summing

    def every_nonzero(self, observed: np.ndarray) -> Optional[np.ndarray]:
        """Every nonzero count of ``observed`` (the batch of these terms) the value screen must see, in no order:
        ``counts``, and the values of the dense rows unless they are all read counts (0 <= k < 16384 integers: no
        screen finds anything there) and where those rows are few (at most ``SCREENED_DENSE``); None where more
        rows are dense and not known to hold read counts only."""
        if not self.dense.any() or self.dense_read_counts:
            return self.counts
        if self.dense.mean() > SCREENED_DENSE:
            return None
        return np.concatenate([self.counts, observed.reshape(len(self.dense), -1)[self.dense].reshape(-1)])

    def non_integer_regions(self, observed: np.ndarray) -> np.ndarray:
        """Which regions of ``observed`` ``(n, S, L)`` (the batch of these terms) hold a count that is not an integer
        (or NaN), from the nonzero counts of the sparse rows (their zeros are integers) and the dense rows' values."""
        n, length = observed.shape[0], max(1, observed.shape[-1])
        per_region = max(1, observed[:1].size)
        regions = np.zeros(n, bool)
        with np.errstate(invalid="ignore"):
            regions[self.where[self.counts != np.rint(self.counts)] // per_region] = True
            if self.dense.any():
                rows = observed.reshape(len(self.dense), length)[self.dense]
                fractional = np.flatnonzero(self.dense)[(rows != np.rint(rows)).any(axis=1)]
                regions[fractional * length // per_region] = True
        return regions


def count_terms(observed: np.ndarray) -> CountTerms:
    """The nonzero counts of each row of ``observed`` ``(n, S, L)`` whose counts are mostly zeros, the rows whose
    counts are not (``DENSE_ABOVE``; decided row by row, never up to the row's batch-mates), and each row's total
    and log-factorial sum (over its nonzero counts, or every position of a dense row). A function of the counts
    alone: a reading process computes it beside the main process (``workers.ProcessReadAhead``)."""
    length, n_rows = max(1, observed.shape[-1]), observed.size // max(1, observed.shape[-1])
    rows_observed = observed.reshape(n_rows, length)
    nonzero = rows_observed != 0
    if np.count_nonzero(nonzero) > FEW_NONZERO * nonzero.size:  # dense rows likely: counted row by row, left out
        # (a row's count as the sum of its mask's bytes: twice as fast as numpy's count_nonzero along an axis)
        dense = nonzero.view(np.uint8).sum(axis=1, dtype=np.int32) > DENSE_ABOVE * length
        if dense.any():
            nonzero[dense] = False  # summed over every position
        where = np.flatnonzero(nonzero)  # ascending; on a boolean mask: 6x faster than on floats
        first = np.searchsorted(where, np.arange(n_rows) * length)
    else:  # few nonzeros: found once, each row's number of them from where they fall
        where = np.flatnonzero(nonzero)
        first = np.searchsorted(where, np.arange(n_rows + 1) * length)
        per_row = np.diff(first)
        first = first[:-1]
        dense = per_row > DENSE_ABOVE * length
        if dense.any():  # their entries left out
            where = where[np.repeat(~dense, per_row)]
            per_row[dense] = 0
            first = np.cumsum(per_row) - per_row
    values = np.take(rows_observed.reshape(-1), where)  # in their own dtype, which holds read counts exactly
    counts = values.astype(np.float64)
    indices = read_count_indices(values)
    totals = row_sums(counts, first)
    log_factorials = row_sums(log_factorial(counts) if indices is None else log_factorial_table().take(indices), first)
    dense_read_counts = False
    if dense.any():
        sums, dense_read_counts = dense_count_only_sums(rows_observed if dense.all() else rows_observed[dense])
        totals[dense], log_factorials[dense] = sums
    read_counts = indices is not None and (dense_read_counts or not dense.any())
    return CountTerms(where, first, counts, dense, totals, log_factorials, dense_read_counts, read_counts)


def interleaved_count_terms(parts: Sequence[CountTerms], groups: Sequence[Sequence[int]], n_tracks: int,
                            length: int) -> CountTerms:
    """``count_terms(observed)`` of a batch ``(n, S, L)`` from ``count_terms(observed[:, group])`` of each group of its
    tracks (``groups``: the S tracks split into groups, ``parts`` in the same order; a reading process per file
    computes its own): the same arrays, each row's terms being its own (``count_terms`` decides and sums row by row)."""
    rows = np.arange(sum(len(p.dense) for p in parts)).reshape(-1, n_tracks)
    targets = [rows[:, list(group)].reshape(-1) for group in groups]  # each part's rows among the batch's
    entries = [np.diff(p.first, append=len(p.where)) for p in parts]  # each part row's number of entries
    dense, per_row = np.zeros(rows.size, bool), np.zeros(rows.size, np.intp)
    totals, log_factorials = np.zeros(rows.size), np.zeros(rows.size)
    for part, target, counted in zip(parts, targets, entries):
        dense[target], totals[target], log_factorials[target] = part.dense, part.totals, part.log_factorials
        per_row[target] = counted
    first = np.cumsum(per_row) - per_row
    where, counts = np.zeros(int(per_row.sum()), np.intp), np.zeros(int(per_row.sum()))
    for part, target, counted in zip(parts, targets, entries):
        at = np.repeat(first[target] - part.first, counted) + np.arange(len(part.where))
        where[at], counts[at] = part.where + np.repeat((target - np.arange(len(target))) * length, counted), part.counts
    dense_read_counts = dense.any() and all(p.dense_read_counts for p in parts if p.dense.any())
    return CountTerms(where, first, counts, dense, totals, log_factorials, bool(dense_read_counts),
                      all(p.read_counts for p in parts))


def count_terms_bytes(shape: tuple) -> int:
    """The most bytes ``count_terms`` of a batch of ``shape`` ``(n, S, L)`` takes pickled: 16 per nonzero count of its
    sparse rows (at most ``DENSE_ABOVE`` of every position), 25 per row, and room for the pickle's own framing."""
    length, n_rows = max(1, shape[-1]), math.prod(shape[:-1])
    return int(16 * DENSE_ABOVE * n_rows * length) + 25 * n_rows + 4096


def count_sums(observed: np.ndarray, logits: np.ndarray, shift: Optional[np.ndarray] = None,
               terms: Optional[CountTerms] = None):
    """Per track: ``N_s = sum_i k_si``, ``sum_i lgamma(k_si + 1)`` and ``sum_i k_si (z_si - shift_s)``, over the
    nonzero counts only (over every position for a row whose counts are mostly nonzero: ``dense_count_sums``);
    float64 sums.

    Parameters
    ----------
    observed, logits : numpy.ndarray, shape=(n, S, L)
    shift : numpy.ndarray, shape=(n, S), optional
        Subtracted from each track's logits before the products (``shifted_logsumexp``); default 0.
    terms : CountTerms, optional
        ``count_terms(observed)``, when already computed (the first two sums come from there).

    Returns
    -------
    totals, log_factorials, counts_dot_logits : numpy.ndarray, each shape=(n, S), float64
    """
    length, n_rows = max(1, observed.shape[-1]), observed.size // max(1, observed.shape[-1])
    rows_observed, rows_logits = observed.reshape(n_rows, length), logits.reshape(n_rows, length)
    rows_shift = None if shift is None else shift.reshape(n_rows)
    where, first, counts, dense, totals, log_factorials = (count_terms(observed) if terms is None else terms)[:6]
    if dense.all():
        dots = dense_dots(rows_observed, rows_logits, rows_shift)
    else:
        values = np.take(rows_logits.reshape(-1), where)  # (numpy's take: faster than indexing with an array)
        if rows_shift is not None:  # only where some track's logits are large (rare): else the sums are as before
            with np.errstate(over="ignore"):  # logits 1.7e308 apart: -inf, an overflow the value screen reports
                values = values - rows_shift[where // length]
        with np.errstate(over="ignore", invalid="ignore"):
            products = np.multiply(counts, values, dtype=np.float64)
        dots = row_sums(products, first)
        if dense.any():
            dots[dense] = dense_dots(rows_observed[dense], rows_logits[dense],
                                     None if rows_shift is None else rows_shift[dense])
    return tuple(np.stack([totals, log_factorials, dots]).reshape(3, *observed.shape[:-1]))


def read_count_indices(counts: np.ndarray) -> Optional[np.ndarray]:
    """``counts`` as table indices (``intp``) where every one is a read count (an integer ``0 <= k`` within the
    log-factorial table; so finite), else None. Checked in the counts' own dtype (float32 holds them exactly)."""
    table_end = len(log_factorial_table())
    if not counts.size:
        return np.zeros(counts.shape, np.intp)
    with np.errstate(invalid="ignore"):  # NaN: not a read count
        if not (counts.min() >= 0 and counts.max() < table_end and (np.floor(counts) == counts).all()):
            return None
    return counts.astype(np.intp)


def dense_count_only_sums(observed: np.ndarray):
    """Per row of ``observed`` ``(m, L)`` (rows with counts on most bases): ``sum_i k_i`` and ``sum_i lgamma(k_i + 1)``
    over every position, a cache-sized block of rows at a time; returns ``((2, m) sums, every value a read count)``.
    A block of read counts is summed as integers (exact, so the same float64 as a float sum) and looked up in the
    table (``log_factorial``'s values, in the same order), without a float64 copy."""
    sums, table, other = np.zeros((2, observed.shape[0])), log_factorial_table(), []
    for rows in row_blocks(observed, DENSE_BLOCK_VALUES):
        indices = read_count_indices(observed[rows])
        if indices is not None:
            sums[0, rows] = indices.sum(axis=-1)
            sums[1, rows] = table.take(indices).sum(axis=-1)
        elif other and other[-1][1] == rows.start and other[-1][2] < LGAMMA_JOINED_BLOCKS:
            other[-1][1:] = rows.stop, other[-1][2] + 1
        else:
            other.append([rows.start, rows.stop, 1])
    for first, stop, _ in other:  # other values, a few blocks joined: each lgamma call costs ~0.2 ms however few values
        counts = observed[first:stop].astype(np.float64)
        sums[0, first:stop] = counts.sum(axis=-1)
        sums[1, first:stop] = log_factorial(counts).sum(axis=-1)
    return sums, not other


def dense_dots(observed: np.ndarray, logits: np.ndarray, shift: Optional[np.ndarray] = None) -> np.ndarray:
    """``sum_i k_i (z_i - shift)`` per row of ``(m, L)`` over every position, a cache-sized block of rows at a time;
    shift ``(m,)``."""
    dots = np.zeros(observed.shape[0])
    for rows in row_blocks(observed, DENSE_BLOCK_VALUES):
        counts = observed[rows].astype(np.float64)
        values = logits[rows].astype(np.float64)
        if shift is not None:
            with np.errstate(over="ignore"):  # as in the sparse sums
                values -= shift[rows, None]
        with np.errstate(over="ignore", invalid="ignore"):
            dots[rows] = np.einsum("ml,ml->m", counts, values)
    return dots


def dense_count_sums(observed: np.ndarray, logits: np.ndarray, shift: Optional[np.ndarray] = None) -> np.ndarray:
    """``count_sums`` of rows ``(m, L)`` over every position (for rows with counts on most bases); shift ``(m,)``;
    returns ``(3, m)``."""
    return np.concatenate([dense_count_only_sums(observed)[0], dense_dots(observed, logits, shift)[None]])


def row_sums(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``sum(values[first[r]:first[r + 1]])`` for each ``r`` (the last one to the end), 0 for an empty range."""
    sums = np.zeros(len(first))
    inside = first < len(values)  # a prefix: the rows after the last nonzero value start at the end
    if inside.any():
        sums[inside] = np.add.reduceat(values, first[inside])  # pairwise, as numpy's sum
        sums[np.diff(first, append=len(values)) == 0] = 0.0  # reduceat gives an empty range its first value
    return sums


def mnll_from_sums(rest, log_mass, totals, log_factorials, counts_dot_logits, lgamma: Callable):
    """Joint and per-track MNLL of one batch from per-track sums (numpy arrays or torch tensors, shape ``(n, S)``).

    Per track: ``-lgamma(N_s+1) + sum_i lgamma(k_si+1) - sum_i k_si logp_si``; joint (one multinomial over S*L):
    ``-lgamma(N+1) + sum_s sum_i lgamma(k_si+1) - sum_s (sum_i k_si logp_si + N_s log_mass_s)``, with
    ``sum_i k_si logp_si = counts_dot_logits_s - N_s rest_s`` (``counts_dot_logits`` and ``rest`` relative to the
    same shift) and ``log_mass_s`` each track's share of the joint mass (``log_softmax_s lse_s``).

    Returns
    -------
    joint : shape=(n,)
    per_track : shape=(n, S)
    """
    counts_dot_logps = counts_dot_logits - totals * rest
    per_track = -lgamma(totals + 1) + log_factorials - counts_dot_logps
    joint = (-lgamma(totals.sum(-1) + 1) + log_factorials.sum(-1)
             - (counts_dot_logps + totals * log_mass).sum(-1))
    return joint, per_track


def log_softmax(values: np.ndarray) -> np.ndarray:
    """``(z_i - m) - ln sum_j exp(z_j - m)``, ``m = max_j z_j``, over the last axis (the operations in torch's order)."""
    with np.errstate(invalid="ignore"):  # a row whose largest value is not finite: NaN, as torch
        centred = values - values.max(axis=-1, keepdims=True)
    return centred - np.log(np.exp(centred).sum(axis=-1, keepdims=True))


def predicted_profile(logits: np.ndarray, logcounts: np.ndarray) -> np.ndarray:
    """``softmax(z) * exp(c)``: per track when ``c`` has one column per track, else one joint softmax over
    tracks and positions scaled by the region's ``exp(c)``; logits ``(n, S, L)``, log counts ``(n, T)``."""
    z = np.asarray(logits, dtype=np.float64)
    c = np.asarray(logcounts, dtype=np.float64).reshape(z.shape[0], -1)
    if c.shape[1] == z.shape[1] and c.shape[1] > 1:
        log_probabilities = log_softmax(z)
    else:
        log_probabilities = log_softmax(z.reshape(z.shape[0], -1)).reshape(z.shape)
    with np.errstate(over="ignore"):  # e^c of a huge c: inf (the figures leave such regions out)
        return np.exp(log_probabilities) * np.exp(c)[:, :, None]


def _lgamma_of_positive(x: np.ndarray) -> np.ndarray:
    """``lgamma(x)`` for ``x >= 1`` (totals plus one)."""
    return log_factorial(x - 1)


def mnll_per_region(logits: np.ndarray, observed: np.ndarray, terms: Optional[LogitTerms] = None,
                    counted: Optional[CountTerms] = None):
    """Joint and per-track MNLL (the seed's ``MNLLLoss`` of the joint ``log_softmax`` and of each track's), float64.

    Parameters
    ----------
    logits : numpy.ndarray, shape=(n, S, L)
        As stored.
    observed : numpy.ndarray, shape=(n, S, L)
        Any float dtype (float32 holds counts exactly).

    terms : LogitTerms, optional
        ``logit_terms(logits)``, when already computed.
    counted : CountTerms, optional
        ``count_terms(observed)``, when already computed.

    Returns
    -------
    joint : numpy.ndarray, shape=(n,)
    per_track : numpy.ndarray, shape=(n, S)
    track_totals : numpy.ndarray, shape=(n, S)
    """
    shift, rest = shifted_logsumexp(logits) if terms is None else terms[:2]
    large = bool(shift.any())
    lse = (shift - shift.max(axis=-1, keepdims=True)) + rest if large else rest
    log_mass = log_softmax(lse)
    totals, factorials, dots = count_sums(observed, logits, shift if large else None, counted)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is inf/NaN, which the value screen reports
        joint, per_track = mnll_from_sums(rest, log_mass, totals, factorials, dots, _lgamma_of_positive)
    return joint, per_track, totals


def log_count_target(true_counts, target="log1p"):
    """``t(K) = ln(1 + K)`` (``"log1p"``: the seed's count target) or ``ln K`` (``"log"``: BPReveal's), NaN where
    ``ln K`` is undefined (``K = 0``).

    Parameters
    ----------
    true_counts : numpy.ndarray or torch.Tensor
        Observed totals ``K``.
    target : {"log1p", "log"}

    Returns
    -------
    y : same type and shape
    """
    xp = array_namespace(true_counts)
    if target == "log1p":
        return xp.log1p(true_counts)
    if target != "log":
        raise ValueError(f"count target must be 'log1p' or 'log', not {target!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return xp.where(true_counts > 0, xp.log(true_counts), xp.full_like(true_counts, float("nan")))


def log1p_squared_error(log_predicted_counts, true_counts, target="log1p"):
    """Per-region ``mean over the last axis of (t(true) - log_predicted)^2``, ``t = ln(1 + K)`` (or ``ln K``).

    Parameters
    ----------
    log_predicted_counts : numpy.ndarray or torch.Tensor, shape=(n, T)
        Predicted log counts, one per track (T = S) or one per region (T = 1).
    true_counts : same type, shape=(n, T)
        Observed counts matching ``log_predicted_counts``.
    target : {"log1p", "log"}
        The count target (``log_count_target``): ``ln K`` gives NaN where ``K = 0``.

    Returns
    -------
    loss : shape=(n,)
    """
    xp = array_namespace(true_counts)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge log count: inf, which the value screen reports
        return xp.mean(xp.square(log_count_target(true_counts, target) - log_predicted_counts), -1)


def seed_columns(mnll, logcounts, count_loss_weight: float, track_names: Sequence[str],
                 count_target: str = "log1p") -> dict:
    """The seed losses, the per-track MNLL, observed counts and predicted log counts of one batch (numpy arrays
    or torch tensors, in ``logcounts``' dtype), from ``mnll = (joint, per_track, track_totals)``
    (``mnll_per_region``): defined for every region with finite inputs (never NaN), except the count and mixture
    losses under the ``ln K`` count target where a region has no reads. The count loss is ``count_log1p_mse``
    (``count_target="log1p"``) or ``count_log_mse`` (``"log"``)."""
    profile_mnll, per_track_mnll, track_totals = mnll
    target = track_totals.sum(-1)[:, None] if logcounts.shape[-1] == 1 else track_totals
    count_loss = log1p_squared_error(logcounts, target, count_target)
    columns = {"observed_counts": track_totals.sum(-1)}
    if logcounts.shape[-1] == 1:
        columns["predicted_logcounts"] = logcounts[:, 0]
    else:
        for s, name in enumerate(track_names):
            columns[f"observed_counts_{name}"] = target[:, s]
            columns[f"predicted_logcounts_{name}"] = logcounts[:, s]
    columns.update({"profile_mnll": profile_mnll, COUNT_LOSS_COLUMNS[count_target]: count_loss,
                    "mixture_loss": profile_mnll + count_loss_weight * count_loss})
    if len(track_names) > 1:
        for s, name in enumerate(track_names):
            columns[f"profile_mnll_{name}"] = per_track_mnll[:, s]
    return columns


def maybe_undefined(count_target: str) -> frozenset:
    """Seed columns that may be NaN for finite inputs: the count loss and the mixture loss under the ``ln K``
    target, where a region has no reads (none under ``ln(1 + K)``)."""
    return frozenset() if count_target == "log1p" else frozenset({COUNT_LOSS_COLUMNS[count_target], "mixture_loss"})


class SeedComputer:
    """Numpy batches → the seed columns (float64 numpy), on the CPU without torch: ``BatchComputer``'s interface
    for a run whose plan needs nothing beyond the seed losses and the pooled auPRC (``MetricPlan.needs_torch``).
    ``pooled_auprc``: a ``metrics.pooled.PooledAuprc`` fed the rows scored of every batch, or None (its pieces in
    this thread: two threads made a ``--preset bpnet`` run no faster)."""

    device = "cpu"

    def __init__(self, count_loss_weight: float = 1.0, track_names: Sequence[str] = ("plus", "minus"),
                 count_target: str = "log1p", pooled_auprc=None):
        self.count_loss_weight = count_loss_weight
        self.track_names = list(track_names)
        self.count_target = count_target
        self.pooled_auprc = pooled_auprc

    def prepare(self, *arrays):
        """The arrays as they are (``BatchComputer.prepare`` makes tensors)."""
        return arrays

    # The terms of the logits alone (``logit_terms``) and of the counts (``count_terms``) may be computed where the
    # batch is read, beside the computation (the value screen then checks the nonzero counts only).
    logit_terms = staticmethod(logit_terms)
    count_terms = staticmethod(count_terms)

    def __call__(self, logits, logcounts, observed, first_row: int = 0, screen: Optional[Callable] = None,
                 terms: Optional[LogitTerms] = None, counted: Optional[CountTerms] = None) -> dict:
        """Per-region columns (float64) of one batch; ``screen(columns, always_defined)`` sees them and returns the
        rows the pooled auPRC leaves out (or None), as in ``BatchComputer``; ``terms``, ``counted``:
        ``logit_terms(logits)``, ``count_terms(observed)`` when already computed."""
        logits, observed = np.asarray(logits), np.asarray(observed)
        logcounts = np.asarray(logcounts, dtype=np.float64)
        columns = seed_columns(mnll_per_region(logits, observed, terms, counted), logcounts, self.count_loss_weight,
                               self.track_names, self.count_target)
        dropped = screen(columns, frozenset(columns) - maybe_undefined(self.count_target)) if screen else None
        if self.pooled_auprc is not None:
            keep = None if dropped is None or not dropped.any() else ~dropped
            exact = counted is not None and counted.read_counts  # the counts' totals, without reading the counts
            self.pooled_auprc.update(observed, logits, keep,
                                     totals=counted.totals.reshape(observed.shape[:-1]) if exact else None)
        return columns
