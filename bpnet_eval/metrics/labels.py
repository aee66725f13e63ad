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


def _as_dtype(x, dtype):
    """``x`` (a numpy array or torch tensor) in ``dtype`` (of the same library)."""
    return x.astype(dtype) if isinstance(x, np.ndarray) else x.to(dtype)


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
    return observed.sum(axis=-1).mean(axis=-1) > required_min_pos_counts / pos_min_fraction


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
        1 (positive), 0 (negative) or -1 (ambiguous), dtype of ``observed``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):  # (numpy) a strand without counts: 0 / 0
        fraction = observed / observed.sum(axis=-1, keepdims=True)
        ambiguous = (fraction < pos_min_fraction) & (fraction >= neg_max_fraction)
        positive = fraction >= pos_min_fraction
    return _as_dtype(positive, observed.dtype) - _as_dtype(ambiguous, observed.dtype)


def _bins(x, binsize):
    """``x[..., :n*binsize]`` viewed as ``(..., n, binsize)`` with ``n = L // binsize``."""
    n_bins = x.shape[-1] // binsize
    return x[..., :n_bins * binsize].reshape(*x.shape[:-1], n_bins, binsize)


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
    if binsize == 1:
        return x
    binned = _bins(x, binsize)
    return binned.max(axis=-1) if isinstance(binned, np.ndarray) else binned.amax(axis=-1)


def bin_labels(labels, binsize):
    """Bin label: 1 if any position is 1, else -1 if any is -1, else 0 (BPNet ``bin_counts_amb``).

    Parameters
    ----------
    labels : numpy.ndarray or torch.Tensor, shape=(..., L)
        Values in {1, 0, -1}.
    binsize : int

    Returns
    -------
    binned : numpy.ndarray or torch.Tensor, shape=(..., L // binsize)
        ``labels`` itself for ``binsize = 1``.
    """
    if binsize == 1:
        return labels
    binned = _bins(labels, binsize)
    has_positive = (binned == 1).any(axis=-1)
    has_ambiguous = (binned == -1).any(axis=-1)
    return _as_dtype(has_positive, labels.dtype) - _as_dtype(~has_positive & has_ambiguous, labels.dtype)


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
