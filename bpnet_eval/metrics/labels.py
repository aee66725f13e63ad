"""BPNet's peak labels, bins and region mask for its auPRC (kundajelab/bpnet v0, ``eval_profile``), on numpy arrays
and torch tensors alike (no torch import: the pooled auPRC of a run on the CPU computes them in numpy).

Per strand, a position whose observed fraction ``k_i / sum_i k_i`` is ``>= 0.015`` is a positive,
``< 0.005`` a negative, in between ambiguous (label -1, ignored). Positions are grouped in bins
(sizes 1 and 10; a trailing partial bin is dropped): a bin is positive if any position in it is,
else ambiguous if any is, else negative; its prediction is the largest predicted probability in
it. BPNet evaluates only regions whose mean per-strand total exceeds ``2.5 / 0.015``.
"""

import numpy as np

POS_MIN_FRACTION = 0.015
NEG_MAX_FRACTION = 0.005
REQUIRED_MIN_POS_COUNTS = 2.5


def _labels(positive, ambiguous, dtype):
    """1 where ``positive``, -1 where ``ambiguous`` (never both), else 0, from two boolean numpy arrays (as int8: numpy
    casts booleans to floats several times slower, and the bins of int8 labels are found faster) or torch tensors
    (in ``dtype``)."""
    if isinstance(positive, np.ndarray):
        return positive.view(np.int8) - ambiguous.view(np.int8)
    return positive.to(dtype) - ambiguous.to(dtype)


def auprc_region_mask(observed, required_min_pos_counts=REQUIRED_MIN_POS_COUNTS,
                      pos_min_fraction=POS_MIN_FRACTION):
    """Regions BPNet evaluates: ``mean_s sum_i k[s, i] > required_min_pos_counts / pos_min_fraction``.

    Parameters
    ----------
    observed : numpy.ndarray or torch.Tensor, shape=(B, S, L)
        Observed counts.
    required_min_pos_counts, pos_min_fraction : float
        BPNet defaults 2.5 and 0.015 (threshold 166.67 reads per strand on average).

    Returns
    -------
    mask : numpy.ndarray or torch.Tensor, shape=(B,), bool
    """
    return depth_mask(observed.sum(axis=-1), required_min_pos_counts, pos_min_fraction)


def depth_mask(totals, required_min_pos_counts=REQUIRED_MIN_POS_COUNTS, pos_min_fraction=POS_MIN_FRACTION):
    """``auprc_region_mask`` from each region's per-track totals ``(B, S)``: ``mean_s N_s > 2.5 / 0.015``."""
    return totals.mean(axis=-1) > required_min_pos_counts / pos_min_fraction


def peak_labels(observed, pos_min_fraction=POS_MIN_FRACTION, neg_max_fraction=NEG_MAX_FRACTION):
    """Per strand ``f = k / sum_i k``: label 1 where ``f >= pos_min``, -1 where ``neg_max <= f < pos_min``, else 0.

    A strand with no counts has undefined fractions; as in BPNet (NaN compares false) all its
    positions are negatives. Such strands only occur in regions the mask keeps when the other
    strand carries the reads.

    Parameters
    ----------
    observed : numpy.ndarray or torch.Tensor, shape=(..., L)
        Observed counts, one profile per strand along the last axis.
    pos_min_fraction, neg_max_fraction : float
        BPNet defaults 0.015 and 0.005.

    Returns
    -------
    labels : numpy.ndarray or torch.Tensor, shape=(..., L)
        1 (positive), 0 (negative) or -1 (ambiguous): int8 for numpy arrays, the dtype of ``observed`` for tensors.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # (numpy) a strand without counts: 0 / 0
        fraction = observed / observed.sum(axis=-1, keepdims=True)
        ambiguous = (fraction < pos_min_fraction) & (fraction >= neg_max_fraction)
        positive = fraction >= pos_min_fraction
    return _labels(positive, ambiguous, observed.dtype)


def _bin_extreme(x, binsize, largest=True):
    """The largest (or smallest) value of each bin of ``binsize`` consecutive positions along the last axis (a
    partial last bin dropped): numpy's elementwise ``maximum`` of each bin's strided columns in turn (its reduction
    over a short last axis is ~6x slower), torch's ``amax``/``amin`` of the bins. NaN wherever a bin holds one."""
    n = x.shape[-1] // binsize * binsize
    if not isinstance(x, np.ndarray):
        bins = x[..., :n].reshape(*x.shape[:-1], n // binsize, binsize)
        return bins.amax(axis=-1) if largest else bins.amin(axis=-1)
    pick = np.maximum if largest else np.minimum
    extreme = x[..., 0:n:binsize].copy()
    for offset in range(1, binsize):
        pick(extreme, x[..., offset:n:binsize], out=extreme)
    return extreme


def bin_max(x, binsize):
    """``max_{i in bin} x_i`` over consecutive bins of ``binsize`` positions (partial last bin dropped).

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape=(..., L)
    binsize : int

    Returns
    -------
    binned : numpy.ndarray or torch.Tensor, shape=(..., L // binsize)
        ``x`` itself for ``binsize = 1``.
    """
    return x if binsize == 1 else _bin_extreme(x, binsize)


def bin_labels(labels, binsize):
    """Bin label: 1 if any position is 1, else -1 if any is -1, else 0 (BPNet ``bin_counts_amb``); from the bin's
    largest and smallest label.

    Parameters
    ----------
    labels : numpy.ndarray or torch.Tensor, shape=(..., L)
        Values in {1, 0, -1}.
    binsize : int

    Returns
    -------
    binned : numpy.ndarray or torch.Tensor, shape=(..., L // binsize)
        ``labels`` itself for ``binsize = 1``; else int8 for numpy arrays, the dtype of ``labels`` for tensors.
    """
    if binsize == 1:
        return labels
    has_positive = _bin_extreme(labels, binsize) == 1
    has_ambiguous = _bin_extreme(labels, binsize, largest=False) == -1
    return _labels(has_positive, ~has_positive & has_ambiguous, labels.dtype)


def binned_labels_scores_by_size(observed, probs, binsizes, pos_min_fraction=POS_MIN_FRACTION,
                                 neg_max_fraction=NEG_MAX_FRACTION):
    """``{binsize: (labels, scores)}``: binned labels ``bin_labels(peak_labels(k))`` and scores
    ``bin_max(p / sum_i p)`` per strand, the labels and rescaled probabilities made once for every bin size.

    Parameters
    ----------
    observed : numpy.ndarray or torch.Tensor, shape=(B, S, L)
        Observed counts.
    probs : numpy.ndarray or torch.Tensor, shape=(B, S, L)
        Predicted probabilities; renormalised per strand (BPNet).
    binsizes : sequence of int
    pos_min_fraction, neg_max_fraction : float

    Returns
    -------
    dict of int to (labels, scores), each shape=(B, S, L // binsize)
    """
    labels = peak_labels(observed, pos_min_fraction, neg_max_fraction)
    scores = probs / probs.sum(axis=-1, keepdims=True)
    return {binsize: (bin_labels(labels, binsize), bin_max(scores, binsize)) for binsize in binsizes}
