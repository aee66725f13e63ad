"""Independent float64 reference values (numpy/scipy) of the per-region columns of a report."""

import numpy as np
from scipy.special import gammaln, log_softmax


def mnll(logps, counts):
    return -gammaln(counts.sum(-1) + 1) + gammaln(counts + 1).sum(-1) - (counts * logps).sum(-1)


def expected_columns(logits, logcounts, observed, weight=1.0):
    """Per-region values as defined in the reference, computed in float64 with numpy/scipy."""
    logits, logcounts, observed = (np.asarray(a, dtype=np.float64) for a in (logits, logcounts, observed))
    n, s, length = observed.shape
    joint = mnll(log_softmax(logits.reshape(n, -1), axis=-1), observed.reshape(n, -1))
    if logcounts.shape[1] == 1:
        count = (np.log(1 + observed.sum(axis=(1, 2))) - logcounts[:, 0]) ** 2
    else:
        count = ((np.log(1 + observed.sum(axis=2)) - logcounts) ** 2).mean(axis=1)
    per_track = mnll(log_softmax(logits, axis=-1), observed)
    return {"observed_counts": observed.sum(axis=(1, 2)), "profile_mnll": joint, "count_log1p_mse": count,
            "mixture_loss": joint + weight * count, "per_track": per_track}
