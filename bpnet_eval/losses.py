"""The losses BPNet-style models are trained with (bpnet-lite's ``bpnetlite.losses``).

``MNLLLoss``, ``log1pMSELoss`` and the mixture loss with exactly the seed's
semantics, plus per-region forms (no averaging over regions) used by the CLI.
"""

from functools import lru_cache

import numpy as np
import torch


def MNLLLoss(logps, true_counts):
    """Multinomial NLL: ``-lgamma(N+1) + sum_i lgamma(k_i+1) - sum_i k_i * logp_i`` over the last axis.

    Parameters
    ----------
    logps : torch.Tensor, shape=(n, ..., L)
        Normalised log probabilities (logsumexp over the last axis is 0).
    true_counts : torch.Tensor, shape=(n, ..., L)
        Observed counts.

    Returns
    -------
    loss : torch.Tensor, shape=(n, ...)
        The multinomial negative log-likelihood of the counts under the probabilities.
    """
    log_fact_sum = torch.lgamma(torch.sum(true_counts, dim=-1) + 1)
    log_prod_fact = torch.sum(torch.lgamma(true_counts + 1), dim=-1)
    log_prod_exp = torch.sum(true_counts * logps, dim=-1)
    return -log_fact_sum + log_prod_fact - log_prod_exp


def log1pMSELoss(log_predicted_counts, true_counts):
    """Mean over all entries of ``(ln(1 + true) - log_predicted)^2``.

    Parameters
    ----------
    log_predicted_counts : torch.Tensor, shape=(n, ...)
        Predicted counts, already in log space.
    true_counts : torch.Tensor, shape=(n, ...)
        Observed counts, in count space.

    Returns
    -------
    loss : torch.Tensor, shape=()
        The squared error of the logs, averaged over every entry.
    """
    log_true = torch.log(true_counts + 1)
    return torch.mean(torch.square(log_true - log_predicted_counts), dim=-1).mean()


def log1p_squared_error(log_predicted_counts, true_counts):
    """Per-region ``mean over the last axis of (ln(1 + true) - log_predicted)^2``.

    Parameters
    ----------
    log_predicted_counts : torch.Tensor, shape=(n, T)
        Predicted log counts, one per track (T = S) or one per region (T = 1).
    true_counts : torch.Tensor, shape=(n, T)
        Observed counts matching ``log_predicted_counts``.

    Returns
    -------
    loss : torch.Tensor, shape=(n,)
    """
    return torch.mean(torch.square(torch.log1p(true_counts) - log_predicted_counts), dim=-1)


def joint_log_softmax(logits):
    """``log_softmax`` over all tracks and positions jointly: ``z[s,i] - logsumexp_{s,i} z``.

    Parameters
    ----------
    logits : torch.Tensor, shape=(n, S, L)

    Returns
    -------
    logps : torch.Tensor, shape=(n, S, L)
        One multinomial over the S * L categories of each region.
    """
    n = logits.shape[0]
    return torch.log_softmax(logits.reshape(n, -1), dim=-1).reshape(logits.shape)


def count_target(true_counts, n_logcount_columns):
    """The count each log-count prediction is scored against, shape ``(n, T)``.

    One predicted log count per region (T = 1) is scored against the total over tracks and
    positions; one per track (T = S) against each track's total.
    """
    if n_logcount_columns == 1:
        return true_counts.sum(dim=(-2, -1)).unsqueeze(-1)
    return true_counts.sum(dim=-1)


def mixture_loss_per_region(y, y_hat_logits, y_hat_logcounts, count_loss_weight=1.0):
    """Per region: ``MNLL(joint log_softmax(z), k) + w * mean_t (ln(1 + K_t) - c_t)^2``.

    Parameters
    ----------
    y : torch.Tensor, shape=(n, S, L)
        Observed counts.
    y_hat_logits : torch.Tensor, shape=(n, S, L)
        Predicted logits (need not be normalised).
    y_hat_logcounts : torch.Tensor, shape=(n, 1) or (n, S)
        Predicted log counts: one per region (target: total) or one per track.
    count_loss_weight : float
        Weight ``w`` of the count term.

    Returns
    -------
    profile_loss, count_loss, loss : torch.Tensor, each shape=(n,)
    """
    profile_loss = MNLLLoss(joint_log_softmax(y_hat_logits).reshape(y.shape[0], -1),
                            y.reshape(y.shape[0], -1))
    target = count_target(y, y_hat_logcounts.shape[-1])
    count_loss = log1p_squared_error(y_hat_logcounts, target)
    return profile_loss, count_loss, profile_loss + count_loss_weight * count_loss


# Regions converted and reduced at a time on the CPU: small enough for the cache, which makes the
# dtype conversion and the logsumexp about 4x faster than on a whole batch.
_CPU_CHUNK_REGIONS = 128


def track_logsumexp(logits, dtype=None):
    """``lse_s = logsumexp_i z_si`` per track, over cache-sized chunks of regions on the CPU.

    Parameters
    ----------
    logits : torch.Tensor, shape=(n, S, L)
        As stored (float32 is converted chunk by chunk, never as a whole batch).
    dtype : torch.dtype, optional
        Of the result (default: the logits').

    Returns
    -------
    lse : torch.Tensor, shape=(n, S)
    """
    dtype = dtype or logits.dtype
    chunk = max(1, logits.shape[0] if logits.is_cuda else _CPU_CHUNK_REGIONS)
    parts = [torch.logsumexp(logits[a:a + chunk].to(dtype), dim=-1) for a in range(0, logits.shape[0], chunk)]
    return torch.cat(parts) if parts else torch.zeros(logits.shape[:-1], dtype=dtype, device=logits.device)


_LOG_FACTORIAL_TABLE = 4096  # lgamma(k + 1) of the integers below this are looked up


@lru_cache(maxsize=1)
def _log_factorial_table() -> np.ndarray:
    return torch.lgamma(torch.arange(1, _LOG_FACTORIAL_TABLE + 1, dtype=torch.float64)).numpy()


def log_factorial(counts: np.ndarray) -> np.ndarray:
    """``lgamma(k + 1)`` of float64 counts: looked up for small integers (read counts), else computed; the same
    float64 values either way."""
    small = (counts >= 0) & (counts < _LOG_FACTORIAL_TABLE) & (counts == np.floor(counts))
    if small.all():
        return _log_factorial_table()[counts.astype(np.intp)]
    return torch.lgamma(torch.from_numpy(counts) + 1).numpy()


def dense_count_sums(observed, logits, dtype=None):
    """``count_sums`` over every position, in ``dtype`` (the GPU's way: no index lists, one pass each)."""
    counts = observed.to(dtype or logits.dtype)
    return counts.sum(dim=-1), torch.lgamma(counts + 1).sum(dim=-1), (counts * logits.to(counts.dtype)).sum(dim=-1)


def count_sums(observed, logits, dtype=None):
    """Per track: ``N_s = sum_i k_si``, ``sum_i lgamma(k_si + 1)`` and ``sum_i k_si z_si``, over the nonzero
    counts only on the CPU (``lgamma(k + 1)`` only where ``k`` is not 1); float64 sums.

    Parameters
    ----------
    observed, logits : torch.Tensor, shape=(n, S, L)
    dtype : torch.dtype, optional
        Of the results (default: the logits').

    Returns
    -------
    totals, log_factorials, counts_dot_logits : torch.Tensor, each shape=(n, S)
    """
    dtype = dtype or logits.dtype
    if observed.is_cuda:
        return dense_count_sums(observed, logits, dtype)
    length, n_rows = observed.shape[-1], observed.numel() // max(1, observed.shape[-1])
    flat = observed.numpy().reshape(-1)  # CPU tensors share their memory with numpy
    where = np.flatnonzero(flat != 0)  # on a boolean mask: 6x faster than on floats
    rows, counts = where // max(1, length), flat[where].astype(np.float64)
    products = counts * logits.numpy().reshape(-1)[where].astype(np.float64)
    factorial = counts != 1
    log_factorials = log_factorial(counts[factorial])
    sums = np.stack([np.bincount(rows, counts, n_rows), np.bincount(rows[factorial], log_factorials, n_rows),
                     np.bincount(rows, products, n_rows)])
    return tuple(torch.from_numpy(sums).to(dtype).reshape(3, *observed.shape[:-1]))


def mnll_per_region(logits, observed, dtype=None):
    """Joint and per-track MNLL from one per-track ``logsumexp`` and sums over the nonzero counts.

    Per track: ``-lgamma(N_s+1) + sum_i lgamma(k_si+1) - sum_i k_si logp_si``; joint (one
    multinomial over S*L): ``-lgamma(N+1) + sum_s sum_i lgamma(k_si+1) - sum_s (sum_i k_si logp_si + N_s log_mass_s)``,
    with ``sum_i k_si logp_si = sum_i k_si z_si - N_s lse_s`` (no log-probability array is formed).
    Equal to the seed's ``MNLLLoss`` of ``log_softmax`` per track and of the joint ``log_softmax``.

    Parameters
    ----------
    logits : torch.Tensor, shape=(n, S, L)
        As stored (float32 logits are converted chunk by chunk, never as a whole batch).
    observed : torch.Tensor, shape=(n, S, L)
        Any float dtype (float32 holds counts exactly).
    dtype : torch.dtype, optional
        Of the computation (default: the logits').

    Returns
    -------
    joint : torch.Tensor, shape=(n,)
    per_track : torch.Tensor, shape=(n, S)
    track_totals : torch.Tensor, shape=(n, S)
        ``N_s`` in ``dtype``.
    """
    per_track_lse = track_logsumexp(logits, dtype)
    log_mass = torch.log_softmax(per_track_lse, dim=-1)  # each track's share of the joint mass
    track_totals, factorials, counts_dot_logits = count_sums(observed, logits, per_track_lse.dtype)
    counts_dot_logps = counts_dot_logits - track_totals * per_track_lse
    per_track = -torch.lgamma(track_totals + 1) + factorials - counts_dot_logps
    joint = (-torch.lgamma(track_totals.sum(dim=-1) + 1) + factorials.sum(dim=-1)
             - (counts_dot_logps + track_totals * log_mass).sum(dim=-1))
    return joint, per_track, track_totals


def mixture_loss(y, y_hat_logits, y_hat_logcounts, count_loss_weight, labels=None):
    """The seed's mixture loss: ``mean MNLL(joint) + w * log1pMSE(c, total)``.

    One multinomial over all tracks jointly; the count target is the total over tracks and
    positions (one per track where ``y_hat_logcounts`` has S columns). With ``labels``, the
    profile term averages only rows labelled 1 (peaks); the count term averages all rows.

    Parameters
    ----------
    y : torch.Tensor, shape=(n, S, L)
        Observed counts.
    y_hat_logits : torch.Tensor, shape=(n, S, L)
        Predicted logits; need not be normalised.
    y_hat_logcounts : torch.Tensor, shape=(n, 1) or (n, S)
        Predicted log counts.
    count_loss_weight : float
        Weight of the count loss.
    labels : torch.Tensor, shape=(n,), optional
        1 for peaks, 0 otherwise.

    Returns
    -------
    profile_loss, count_loss, loss : torch.Tensor, each a scalar
    """
    profile, count, _ = mixture_loss_per_region(y, y_hat_logits, y_hat_logcounts)
    if labels is not None:
        profile = profile[labels.reshape(-1) == 1]
    profile_loss = profile.mean()
    count_loss = count.mean()
    return profile_loss, count_loss, profile_loss + count_loss_weight * count_loss


_mixture_loss = mixture_loss


def predicted_profile(logits: np.ndarray, logcounts: np.ndarray) -> np.ndarray:
    """``softmax(z) * exp(c)``: per track when ``c`` has one column per track, else one joint softmax over
    tracks and positions scaled by the region's ``exp(c)``; logits ``(n, S, L)``, log counts ``(n, T)``."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    c = torch.as_tensor(np.asarray(logcounts, dtype=np.float64)).reshape(z.shape[0], -1)
    if c.shape[1] == z.shape[1] and c.shape[1] > 1:
        probabilities = torch.softmax(z, dim=-1)
    else:
        probabilities = joint_log_softmax(z).exp()
    return (probabilities * torch.exp(c)[:, :, None]).numpy()
