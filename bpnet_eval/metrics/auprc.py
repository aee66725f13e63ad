"""BPNet's binned profile auPRC (kundajelab/bpnet v0, ``eval_profile``), vectorised: per region, or pooled over
the regions of one batch in memory.

The labels, bins and region mask are ``metrics.labels``'s (a position is positive where it holds at least 1.5% of its
strand's reads; bins of 1 and 10 positions; regions with a mean of more than 2.5 / 0.015 reads per strand). auPRC is
the average precision ``sum_n (R_n - R_{n-1}) P_n`` over descending thresholds. BPNet pools the bins of all strands
of all evaluated regions into one curve (``pooled_auprc``; a whole run's, in bounded memory, is
``metrics.pooled.PooledAuprc``); ``average_precision`` over the last axis also gives one curve per region or per
strand.
"""

import numpy as np
import torch

from .labels import (NEG_MAX_FRACTION, POS_MIN_FRACTION, REQUIRED_MIN_POS_COUNTS, auprc_region_mask, bin_labels,
                     bin_max, binned_labels_scores_by_size, peak_labels)
from .pooled import average_precision_of_keys, score_label_keys
from .sorting import side_by_side, take_in_rows

__all__ = ["NEG_MAX_FRACTION", "POS_MIN_FRACTION", "REQUIRED_MIN_POS_COUNTS", "auprc_region_mask",
           "average_precision", "average_precision_of_keys", "bin_labels", "bin_max", "binned_labels_scores",
           "binned_labels_scores_by_size", "peak_labels", "pooled_auprc", "precision_terms", "score_label_keys"]

NAN = float("nan")


def average_precision(labels, scores):
    """``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds, descending, along the last axis.

    The sklearn ``average_precision_score`` definition: at each distinct score ``t_n`` (ties form one
    threshold), ``P_n`` and ``R_n`` are the precision and recall of calling ``score >= t_n``
    positive; ``R_0 = 0``. Entries labelled -1 (ambiguous) or with a NaN score are left out.

    Parameters
    ----------
    labels : torch.Tensor, shape=(..., n)
        1 (positive), 0 (negative) or -1 (ignored).
    scores : torch.Tensor, shape=(..., n)
        Predictions; higher means more likely positive.

    Returns
    -------
    ap : torch.Tensor, shape=(...)
        Dtype and device of ``scores`` (computed on the CPU: ``precision_terms``); NaN where there is no positive
        (also with no entry: a window shorter than a bin).
    """
    if scores.shape[-1] == 0:
        return torch.full(scores.shape[:-1], NAN, dtype=scores.dtype, device=scores.device)
    terms, n_positive = _precision_terms(labels, scores)
    n_positive = n_positive.to(scores.dtype)
    return torch.where(n_positive > 0, torch.sum(terms, dim=-1) / n_positive, NAN).to(scores.device)


def precision_terms(labels, scores):
    """The terms of ``average_precision``'s sum, each at its place: ``sum_n (R_n - R_{n-1}) P_n`` is the mean over
    positives of the precision at the threshold that calls them (at the last entry tied with them), and the place
    of each positive in the descending order of scores (ties by position, as torch's stable sort) holds that
    precision; 0 elsewhere. The places decide the rounding of the sum. The places are found in numpy on the CPU
    whatever the device (a few dozen operations on a few rows a call: numpy's cost per call is a fifth of torch's),
    sorting only the start of each row up to its last positive (``_prefix_groups``); the precisions are divided in
    the dtype of ``scores``.

    Parameters
    ----------
    labels, scores : torch.Tensor, shape=(..., n)
        As ``average_precision``.

    Returns
    -------
    terms : torch.Tensor, shape=(..., n)
        Dtype of ``scores``, on the CPU.
    """
    return _precision_terms(labels, scores)[0]


def _precision_terms(labels, scores):
    """``precision_terms`` and the number of positives of each row ``(...)`` (int64: one term each)."""
    n = scores.shape[-1]
    labels_np, scores_np = (_as_numpy(x).reshape(-1, n) for x in (labels, scores))
    keep = (labels_np >= 0) & ~np.isnan(scores_np)
    parts = [np.zeros((3, 0), np.int64)]  # each group's places, true positives and called
    for rows, prefix, lengths in _prefix_groups(keep, (labels_np == 1) & keep, scores_np):
        width = int(lengths.max())
        at, true_pos, called = _precisions_in_order(*_compacted(rows, prefix, lengths, width, labels_np, scores_np))
        parts.append(np.stack([rows[at // width] * n + at % width, true_pos, called]))
    places, true_pos, called = np.concatenate(parts, axis=1)
    n_positive = np.bincount(places // max(n, 1), minlength=len(scores_np)).reshape(scores.shape[:-1])
    places, true_pos, called = (torch.from_numpy(part) for part in (places, true_pos, called))
    terms = torch.zeros(scores.shape, dtype=scores.dtype)
    terms.view(-1)[places] = true_pos.to(scores.dtype) / called.to(scores.dtype)
    return terms, torch.from_numpy(n_positive)


def _as_numpy(x):
    """A tensor's values as a numpy array on the CPU; bfloat16 (which numpy lacks) as float32, which holds each of
    its values: the same order, ties and NaN."""
    x = x.detach().cpu()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


# rows of ``average_precision`` whose prefixes (``_prefix_groups``) are sorted together, padded to the longest
PREFIX_GROUP_ROWS = 64


def _prefix_groups(keep, positive, scores):
    """The rows ``(R, n)`` holding a positive, each with its prefix: the entries that sort at or before its last
    positive in descending order (ties together), all that ``average_precision`` needs of a row. They are the kept
    entries scoring at least its lowest-scoring positive, or every entry where that positive scores -inf (tied with
    the entries left out, which sort with -inf). In groups of ``PREFIX_GROUP_ROWS`` rows, in order of their
    prefix's length.

    Returns
    -------
    list of (rows, prefix, lengths)
        ``rows``: the row numbers; ``prefix``: bool ``(len(rows), n)``; ``lengths``: each prefix's entries.
    """
    rows = np.flatnonzero(positive.any(axis=-1))
    if not rows.size:
        return []
    if rows.size < len(positive):  # (else every row, without copies)
        keep, positive, scores = keep[rows], positive[rows], scores[rows]
    low = np.where(positive, scores, np.inf).min(axis=-1)
    prefix = keep & (scores >= low[:, None])
    prefix[low == -np.inf] = True
    lengths = prefix.view(np.int8).sum(axis=-1, dtype=np.intp)  # (twice as fast as count_nonzero along an axis)
    if len(rows) <= PREFIX_GROUP_ROWS:
        return [(rows, prefix, lengths)]
    by_length = np.argsort(lengths, kind="stable")
    groups = []
    for a in range(0, len(rows), PREFIX_GROUP_ROWS):
        members = by_length[a:a + PREFIX_GROUP_ROWS]
        groups.append((rows[members], prefix[members], lengths[members]))
    return groups


def _compacted(rows, prefix, lengths, width, labels, scores):
    """``(labels, scores)`` ``(len(rows), width)`` of ``rows`` of ``(R, n)`` holding the entries of their ``prefix``
    (``lengths`` of them, at most ``width``) by position, then entries left out (label -1, NaN score): a row's prefix
    sorts as the start of the whole row."""
    n = prefix.shape[-1]
    taken = np.flatnonzero(prefix)  # row by row, by position
    member = taken // n
    at = side_by_side(member, lengths, width)
    source = rows[member] * n + taken % n
    compact_labels = np.full((len(rows), width), -1, labels.dtype)
    compact_scores = np.full((len(rows), width), np.nan, scores.dtype)
    compact_labels.reshape(-1)[at] = labels.reshape(-1)[source]
    compact_scores.reshape(-1)[at] = scores.reshape(-1)[source]
    return compact_labels, compact_scores


def _precisions_in_order(labels, scores):
    """``(places, true positives, called)`` of the positives of rows ``(R, n)``: each one's flat place in its row's
    descending order (ties by position, as torch's stable sort) and the counts of its precision ``TP / called`` at
    the last entry tied with it."""
    keep = (labels >= 0) & ~np.isnan(scores)
    # descending scores, the entries left out last: sorted by any sort, then by a stable one only where a positive
    # is tied with another entry
    descending = np.where(keep, -scores, np.inf)
    order = np.argsort(descending, axis=-1)
    ordered = take_in_rows(descending, order)
    ends_tie = np.ones(keep.shape, bool)
    ends_tie[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    ends_tie = ends_tie.reshape(-1)  # rows laid end to end: each row's last entry ends a tie
    tie_ends = np.flatnonzero(ends_tie)
    labelled = (labels == 1) & keep
    positive, positives, tie_end = _positives_and_tie_ends(labelled, order, tie_ends)
    tied = (tie_end != positives) | ((positives > 0) & ~ends_tie[np.maximum(positives - 1, 0)])
    if tied.any():
        positive, positives, tie_end = _positives_and_tie_ends(labelled, np.argsort(descending, axis=-1, kind="stable"),
                                                               tie_ends)
    true_pos = np.cumsum(positive, axis=-1).reshape(-1)
    called = np.cumsum(take_in_rows(keep, order), axis=-1).reshape(-1)  # the same counts in any tie order
    return positives, true_pos[tie_end], called[tie_end]


def _positives_and_tie_ends(labelled, order, tie_ends):
    """The positives in ``order`` (a mask), their flat sorted positions and the flat position of the last entry tied
    with each (the first of ``tie_ends`` at or after it)."""
    positive = take_in_rows(labelled, order)
    positives = np.flatnonzero(positive)
    return positive, positives, tie_ends[np.searchsorted(tie_ends, positives)]


def binned_labels_scores(observed, probs, binsize, pos_min_fraction=POS_MIN_FRACTION,
                         neg_max_fraction=NEG_MAX_FRACTION):
    """Binned labels ``bin_labels(peak_labels(k))`` and scores ``bin_max(p / sum_i p)``, per strand.

    Parameters
    ----------
    observed : torch.Tensor, shape=(B, S, L)
        Observed counts.
    probs : torch.Tensor, shape=(B, S, L)
        Predicted probabilities; renormalised per strand (BPNet).
    binsize : int
    pos_min_fraction, neg_max_fraction : float

    Returns
    -------
    labels, scores : torch.Tensor, each shape=(B, S, L // binsize)
    """
    return binned_labels_scores_by_size(observed, probs, (binsize,), pos_min_fraction, neg_max_fraction)[binsize]


def pooled_auprc(observed, probs, binsize=1, mask=None, pos_min_fraction=POS_MIN_FRACTION,
                 neg_max_fraction=NEG_MAX_FRACTION, required_min_pos_counts=REQUIRED_MIN_POS_COUNTS):
    """BPNet's auPRC: one ``average_precision`` over the bins of every strand of every masked region.

    To pool over more regions than fit in memory at once, collect ``labels[mask].flatten()`` and
    ``scores[mask].flatten()`` from ``binned_labels_scores`` per batch, concatenate, and call
    ``average_precision`` on the 1-D results.

    Parameters
    ----------
    observed : torch.Tensor, shape=(B, S, L)
        Observed counts.
    probs : torch.Tensor, shape=(B, S, L)
        Predicted probabilities (per strand, as BPNet; they are renormalised per strand).
    binsize : int
        1 or 10 in BPNet.
    mask : torch.Tensor, shape=(B,), bool, optional
        Regions to pool; default ``auprc_region_mask(observed, ...)``.
    pos_min_fraction, neg_max_fraction, required_min_pos_counts : float
        BPNet defaults 0.015, 0.005, 2.5.

    Returns
    -------
    auprc : torch.Tensor, shape=()
        NaN where no bin is positive.
    """
    if mask is None:
        mask = auprc_region_mask(observed, required_min_pos_counts, pos_min_fraction)
    labels, scores = binned_labels_scores(observed, probs, binsize, pos_min_fraction, neg_max_fraction)
    return average_precision(labels[mask].flatten(), scores[mask].flatten())
