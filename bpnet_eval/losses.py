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


def log_count_target(true_counts, target="log1p"):
    """``t(K) = ln(1 + K)`` (``"log1p"``: the seed's count target) or ``ln K`` (``"log"``: BPReveal's), NaN where
    ``ln K`` is undefined (``K = 0``).

    Parameters
    ----------
    true_counts : torch.Tensor
        Observed totals ``K``.
    target : {"log1p", "log"}

    Returns
    -------
    y : torch.Tensor, same shape
    """
    if target == "log1p":
        return torch.log1p(true_counts)
    if target != "log":
        raise ValueError(f"count target must be 'log1p' or 'log', not {target!r}")
    return torch.where(true_counts > 0, torch.log(true_counts), torch.full_like(true_counts, float("nan")))


def log1p_squared_error(log_predicted_counts, true_counts, target="log1p"):
    """Per-region ``mean over the last axis of (t(true) - log_predicted)^2``, ``t = ln(1 + K)`` (or ``ln K``).

    Parameters
    ----------
    log_predicted_counts : torch.Tensor, shape=(n, T)
        Predicted log counts, one per track (T = S) or one per region (T = 1).
    true_counts : torch.Tensor, shape=(n, T)
        Observed counts matching ``log_predicted_counts``.
    target : {"log1p", "log"}
        The count target (``log_count_target``): ``ln K`` gives NaN where ``K = 0``.

    Returns
    -------
    loss : torch.Tensor, shape=(n,)
    """
    return torch.mean(torch.square(log_count_target(true_counts, target) - log_predicted_counts), dim=-1)


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


# A track whose |logsumexp| exceeds this is shifted by its largest logit before the sums of ``mnll_per_region``:
# ``sum_i k_i z_i - N lse`` cancels catastrophically when ``lse`` is large (an offset of 1e12 on every logit
# lost 5 digits), while ``sum_i k_i (z_i - max) - N (lse - max)`` adds terms of one sign. Below it nothing is
# shifted (the sums are as before, to the last bit): the cancellation costs at most ``2^-52 * 2 * N * 1024``.
SHIFT_ABOVE = 1024.0


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
    wide = values.astype(np.float64)
    top = wide.max(axis=-1, keepdims=True) if wide.shape[-1] else np.zeros(wide.shape[:-1] + (1,))
    top[~np.isfinite(top)] = 0.0
    with np.errstate(over="ignore"):  # z - m below -max float: -inf, whose exp is 0 (as torch, silently)
        np.subtract(wide, top, out=wide)
    np.exp(wide, out=wide)
    with np.errstate(divide="ignore"):  # an all -inf row: ln 0 = -inf, as torch
        return np.log(wide.sum(axis=-1)) + top[..., 0]


def shifted_track_logsumexp(logits, dtype=None):
    """``lse_s = shift_s + rest_s`` per track, over cache-sized chunks of regions on the CPU.

    ``shift_s`` is 0 where ``|lse_s| <= SHIFT_ABOVE`` (``rest_s`` is then ``logsumexp_i z_si`` itself, as it always
    was), else the track's largest logit ``max_i z_si`` as stored, with ``rest_s = logsumexp_i (z_si - shift_s)`` in
    ``[0, ln L]``, the differences taken in float64 before any conversion to ``dtype``: the pair keeps every digit
    of ``lse_s - shift_s`` however large the logits are.

    Parameters
    ----------
    logits : torch.Tensor, shape=(n, S, L)
        As stored (float32 is converted chunk by chunk, never as a whole batch).
    dtype : torch.dtype, optional
        Of ``rest`` (default: the logits').

    Returns
    -------
    shift : torch.Tensor, shape=(n, S), float64
    rest : torch.Tensor, shape=(n, S), ``dtype``
    """
    dtype = dtype or logits.dtype
    chunk = max(1, logits.shape[0] if logits.is_cuda else _CPU_CHUNK_REGIONS)
    if logits.device.type == "cpu" and dtype == torch.float64:  # numpy's float64 exp: 3x torch's on the CPU
        values = logits.numpy()
        parts = [torch.from_numpy(float64_logsumexp(values[a:a + chunk])) for a in range(0, logits.shape[0], chunk)]
    else:
        parts = [torch.logsumexp(logits[a:a + chunk].to(dtype), dim=-1) for a in range(0, logits.shape[0], chunk)]
    rest = torch.cat(parts) if parts else torch.zeros(logits.shape[:-1], dtype=dtype, device=logits.device)
    shift = torch.zeros(rest.shape, dtype=torch.float64, device=rest.device)
    large = rest.abs() > SHIFT_ABOVE  # NaN (non-finite logits) is never large: it stays NaN
    if large.any():  # rare: those regions again, in float64, each track shifted by its largest logit
        rows = large.any(dim=-1).nonzero().flatten()
        wide = logits[rows].to(torch.float64)
        top = wide.amax(dim=-1)
        chosen = large[rows]
        shift[rows] = torch.where(chosen, top, shift[rows])
        rest[rows] = torch.where(chosen, torch.logsumexp((wide - top.unsqueeze(-1)).to(dtype), dim=-1), rest[rows])
    return shift, rest


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
    shift, rest = shifted_track_logsumexp(logits, dtype)
    return (shift + rest).to(rest.dtype) if bool(shift.any()) else rest


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


def dense_count_sums(observed, logits, dtype=None, shift=None):
    """``count_sums`` over every position, in ``dtype`` (the GPU's way: no index lists, one pass each)."""
    counts = observed.to(dtype or logits.dtype)
    if shift is None:
        logits = logits.to(counts.dtype)
    else:  # the differences in float64, as ``shifted_track_logsumexp`` takes them
        logits = (logits.to(torch.float64) - shift.to(torch.float64).unsqueeze(-1)).to(counts.dtype)
    return counts.sum(dim=-1), torch.lgamma(counts + 1).sum(dim=-1), (counts * logits).sum(dim=-1)


def count_sums(observed, logits, dtype=None, shift=None):
    """Per track: ``N_s = sum_i k_si``, ``sum_i lgamma(k_si + 1)`` and ``sum_i k_si (z_si - shift_s)``, over the
    nonzero counts only on the CPU (``lgamma(k + 1)`` only where ``k`` is not 1); float64 sums.

    Parameters
    ----------
    observed, logits : torch.Tensor, shape=(n, S, L)
    dtype : torch.dtype, optional
        Of the results (default: the logits').
    shift : torch.Tensor, shape=(n, S), optional
        Subtracted from each track's logits before the products (``shifted_track_logsumexp``); default 0.

    Returns
    -------
    totals, log_factorials, counts_dot_logits : torch.Tensor, each shape=(n, S)
    """
    dtype = dtype or logits.dtype
    if shift is not None and not bool(shift.any()):
        shift = None
    if observed.is_cuda:
        return dense_count_sums(observed, logits, dtype, shift)
    length, n_rows = observed.shape[-1], observed.numel() // max(1, observed.shape[-1])
    flat = observed.numpy().reshape(-1)  # CPU tensors share their memory with numpy
    where = np.flatnonzero(flat != 0)  # on a boolean mask: 6x faster than on floats
    rows, counts = where // max(1, length), flat[where].astype(np.float64)
    values = logits.numpy().reshape(-1)[where].astype(np.float64)
    if shift is not None:  # only where some track's logits are large (rare): else the sums are as before
        with np.errstate(over="ignore"):  # logits 1.7e308 apart: -inf, an overflow the value screen reports
            values = values - shift.to(torch.float64).numpy().reshape(-1)[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        products = counts * values
    factorial = counts != 1
    log_factorials = log_factorial(counts[factorial])
    sums = np.stack([np.bincount(rows, counts, n_rows), np.bincount(rows[factorial], log_factorials, n_rows),
                     np.bincount(rows, products, n_rows)])
    return tuple(torch.from_numpy(sums).to(dtype).reshape(3, *observed.shape[:-1]))


def mnll_per_region(logits, observed, dtype=None):
    """Joint and per-track MNLL from one per-track ``logsumexp`` and sums over the nonzero counts.

    Per track: ``-lgamma(N_s+1) + sum_i lgamma(k_si+1) - sum_i k_si logp_si``; joint (one
    multinomial over S*L): ``-lgamma(N+1) + sum_s sum_i lgamma(k_si+1) - sum_s (sum_i k_si logp_si + N_s log_mass_s)``,
    with ``sum_i k_si logp_si = sum_i k_si (z_si - shift_s) - N_s (lse_s - shift_s)`` (no log-probability array is
    formed; ``shift_s`` is 0, or the track's largest logit where its logsumexp is large: ``shifted_track_logsumexp``).
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
    shift, rest = shifted_track_logsumexp(logits, dtype)  # lse_s = shift_s + rest_s; shift 0 unless large
    large = bool(shift.any())
    # each track's share of the joint mass, log_softmax_s(lse_s): of (shift_s - max_t shift_t) + rest_s when shifted
    log_mass = torch.log_softmax(((shift - shift.amax(dim=-1, keepdim=True)) + rest).to(rest.dtype) if large else rest,
                                 dim=-1)
    if not large:
        shift = None
    track_totals, factorials, counts_dot_logits = count_sums(observed, logits, rest.dtype, shift)
    counts_dot_logps = counts_dot_logits - track_totals * rest  # sum_i k_si (z_si - shift_s) - N_s rest_s
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
