"""BPNet's auPRC pooled over the bins of every strand of every evaluated region, exact in bounded memory, in numpy
(no torch import: ``--preset bpnet`` on the CPU runs without torch).

Each bin becomes one uint32 key, its float32 score and its label (``score_label_keys``); ``PooledAuprc`` keeps the
keys in ``spill.SortedRuns`` (sorted runs spilled to a temporary file) and merges them once at the end into the
average precision (``average_precision_of_keys``). ``metrics.auprc.pooled_auprc`` is the same number from one
batch held in memory.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Callable, Optional

import numpy as np

from ..spill import SortedRuns, merged_ahead
from .labels import auprc_region_mask, binned_labels_scores_by_size, depth_mask
from .names import BIN_SIZES

NO_POSITIVE_KEY = 1 << 32  # the floor before any positive: above every uint32 key
PIECE_VALUES = 1 << 17  # values of a batch whose keys are made at a time (cache-sized: small temporaries)


def softmax(logits: np.ndarray) -> np.ndarray:
    """``exp(z_i - m) / sum_j exp(z_j - m)``, ``m = max_j z_j``, over the last axis, in float64.

    Parameters
    ----------
    logits : numpy.ndarray, shape=(..., L)
        Any float dtype (converted to float64 first).

    Returns
    -------
    probs : numpy.ndarray, shape=(..., L), float64
        NaN along a row holding NaN or +inf, or every logit -inf (as torch's ``softmax``).
    """
    wide = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        np.subtract(wide, wide.max(axis=-1, keepdims=True), out=wide)
        np.exp(wide, out=wide)
        return wide / wide.sum(axis=-1, keepdims=True)


def score_label_keys(labels, scores):
    """uint32 keys ``(b << 1) | [label = 1]`` of the entries with ``label >= 0`` and a score, ``b`` the bits of the
    float32 score: ascending keys order the entries by score (ties together, negatives first), so sorted keys
    carry everything ``average_precision`` needs.

    Parameters
    ----------
    labels : numpy.ndarray or torch.Tensor, shape=(n,)
        1 (positive), 0 (negative) or -1 (ignored).
    scores : numpy.ndarray or torch.Tensor, shape=(n,)
        Non-negative scores (probabilities); NaN entries are left out. Rounded to float32, as pooled.

    Returns
    -------
    keys : numpy.ndarray, shape=(m,), uint32
    """
    labels, scores = (x if isinstance(x, np.ndarray) else x.cpu().numpy() for x in (labels, scores))
    with np.errstate(invalid="ignore"):  # (NaN scores are left out)
        scores32 = scores.astype(np.float32) + np.float32(0.0)  # -0.0 becomes 0.0: one key per value
        keep = (labels >= 0) & ~np.isnan(scores32)
        if bool((keep & (scores32 < 0)).any()):
            raise ValueError("pooled auPRC scores must be >= 0 (probabilities)")
    keys = scores32.view(np.uint32) << np.uint32(1)  # every entry's key, then the kept ones: one compress
    keys |= labels == 1
    return keys[keep]


def average_precision_of_keys(blocks, n_positive, n_called):
    """``AP = (1/P) sum_t pos_t TP(>= t) / C(>= t)`` over the distinct scores ``t`` of ascending key blocks.

    The pooled form of ``average_precision``: ``pos_t`` positives score exactly ``t``; ``TP(>= t)`` and
    ``C(>= t)`` count the positives and all entries scoring ``>= t`` (from the totals ``P`` and ``C`` less
    what scored below). Exact integer counts; the terms summed exactly (``math.fsum``: correctly rounded, so the
    same whatever the blocks); a score's entries may span blocks. Keys scoring below the lowest positive may be left
    out (with ``C`` counting only the keys given): they enter no term.

    Parameters
    ----------
    blocks : iterable of numpy.ndarray, uint32
        ``score_label_keys`` of every entry, in ascending order, in blocks.
    n_positive, n_called : int
        ``P`` (keys with the low bit set) and ``C`` (all keys).

    Returns
    -------
    ap : float
        NaN where there is no positive.
    """
    if n_positive == 0:
        return float("nan")
    below_pos, below_all = 0, 0

    def terms(score, pos, count):
        """The terms of consecutive distinct scores (their positives and entries), and what scored below them."""
        nonlocal below_pos, below_all
        tp_at_least = n_positive - below_pos - (np.cumsum(pos) - pos)
        called_at_least = n_called - below_all - (np.cumsum(count) - count)
        below_pos += int(pos.sum())
        below_all += int(count.sum())
        scored = pos > 0
        return (pos[scored] * (tp_at_least[scored] / called_at_least[scored])).tolist()

    def every_term():
        carry = (np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64))  # a score's group left open
        for block in blocks:
            if block.size == 0:
                continue
            score = block >> np.uint32(1)
            starts = np.flatnonzero(np.concatenate([[True], score[1:] != score[:-1]]))
            pos = np.add.reduceat((block & np.uint32(1)).astype(np.int64), starts)
            count = np.diff(np.append(starts, block.size))
            score = score[starts]
            if carry[0].size and carry[0][0] == score[0]:
                pos[0] += carry[1][0]
                count[0] += carry[2][0]
            elif carry[0].size:
                score, pos, count = (np.concatenate([c, a]) for c, a in zip(carry, (score, pos, count)))
            yield terms(score[:-1], pos[:-1], count[:-1])
            carry = (score[-1:], pos[-1:], count[-1:])
        if carry[0].size:
            yield terms(*carry)

    return math.fsum(chain.from_iterable(every_term())) / n_positive


def region_keys(observed: np.ndarray, logits: np.ndarray) -> dict:
    """``{binsize: score_label_keys}`` of every bin of regions ``(n, S, L)`` in float64 (as stored: each converted
    here): ``binned_labels_scores_by_size`` of the counts and the logits' per-strand ``softmax``."""
    binned = binned_labels_scores_by_size(observed.astype(np.float64), softmax(logits), BIN_SIZES)
    return {binsize: score_label_keys(labels.reshape(-1), scores.reshape(-1))
            for binsize, (labels, scores) in binned.items()}


class PooledAuprc:
    """BPNet's auPRC pooled over the bins of every strand of every evaluated region, fed per batch, exact in
    bounded memory: each bin becomes one uint32 key (its float32 score and label, ``score_label_keys``), kept in
    ``SortedRuns`` (sorted runs spilled to a temporary file beyond ``run_values`` keys) and merged once at the
    end (``average_precision_of_keys``). Only the keys scoring at least the lowest positive enter a term: those
    below the lowest positive seen so far are left unsorted when spilled (``SortedRuns.floor``), and only the keys
    at or above the lowest positive of all are sorted and merged (none where no bin is positive: a background
    track). Disk: 4 bytes per evaluated bin beyond the first run."""

    def __init__(self, run_values: Optional[int] = None, block_values: Optional[int] = None):
        self._runs = {b: SortedRuns(run_values, block_values) for b in BIN_SIZES}
        self._positives = {b: 0 for b in BIN_SIZES}
        for runs in self._runs.values():
            runs.floor = NO_POSITIVE_KEY

    def update(self, observed: np.ndarray, logits: np.ndarray, keep: Optional[np.ndarray] = None,
               map_pieces: Callable = map, totals: Optional[np.ndarray] = None) -> None:
        """Add one batch: observed counts and logits ``(B, S, L)`` as stored (probabilities per strand), computed in
        float64 in cache-sized pieces; ``keep``: the rows scored (default all); ``map_pieces``: how the keys of the
        pieces are made (``map``, or a thread pool's ``map``), added in piece order either way; ``totals``: each
        track's total ``(B, S)`` in float64 where it is exact (read counts: the same in any order of summing), for
        the region mask without reading the counts of the regions it leaves out."""
        step = max(1, PIECE_VALUES // max(1, math.prod(observed.shape[1:])))
        if totals is not None:
            mask = depth_mask(totals)
        else:
            masks = map_pieces(lambda first: auprc_region_mask(observed[first:first + step].astype(np.float64)),
                               range(0, len(observed), step))
            mask = np.concatenate([np.zeros(0, bool), *masks])
        rows = np.flatnonzero(mask if keep is None else mask & keep)

        def piece_keys(first):
            piece = rows[first:first + step]
            return region_keys(observed[piece], logits[piece])

        for keys_by_size in map_pieces(piece_keys, range(0, len(rows), step)):
            self.add(keys_by_size)

    def add(self, keys_by_size: dict) -> None:
        """Add ``{binsize: keys}`` (``score_label_keys``) of some bins."""
        for binsize, keys in keys_by_size.items():
            positive = (keys & 1).astype(bool)
            if positive.any():
                self._positives[binsize] += int(np.count_nonzero(positive))
                runs = self._runs[binsize]  # the keys of the lowest positive's score, negatives first, and above
                runs.floor = min(runs.floor, int(keys[positive].min()) & ~1)
            self._runs[binsize].add(keys)

    def result(self) -> dict:
        """``{"binsize=1": auprc, "binsize=10": auprc}``; None where no bin is positive (or no region passed
        the mask). Each bin size in a thread of its own, its keys merged by another one ahead of it
        (``spill.merged_ahead``): the same blocks in the same order, so the same numbers. Removes the temporary
        files."""
        def auprc(binsize):
            runs = self._runs[binsize]
            try:
                value = math.nan
                if self._positives[binsize]:
                    called = runs.settle(runs.floor)  # the keys at or above the lowest positive
                    value = average_precision_of_keys(merged_ahead(runs), self._positives[binsize], called)
            finally:
                runs.close()
            return None if np.isnan(value) else value

        with ThreadPoolExecutor(len(self._runs), thread_name_prefix="bpnet-eval-pooled") as pool:
            values = list(pool.map(auprc, self._runs))
        return {f"binsize={binsize}": value for binsize, value in zip(self._runs, values)}
