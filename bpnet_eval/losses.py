"""The losses BPNet-style models are trained with (bpnet-lite's ``bpnetlite.losses``).

``MNLLLoss``, ``log1pMSELoss`` and the mixture loss with exactly the seed's
semantics, plus per-region forms (no averaging over regions) used by the CLI.
"""

import torch

from . import seed
from .seed import SHIFT_ABOVE, log1p_squared_error, mnll_from_sums


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
    if logits.device.type == "cpu" and dtype == torch.float64:  # numpy's float64 exp: 3x torch's on the CPU
        return tuple(torch.from_numpy(part) for part in seed.shifted_logsumexp(logits.numpy()))
    chunk = max(1, logits.shape[0] if logits.is_cuda else seed.CPU_CHUNK_REGIONS)
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
    sums = seed.count_sums(observed.numpy(), logits.numpy(),  # CPU tensors share their memory with numpy
                           None if shift is None else shift.to(torch.float64).numpy())
    return tuple(torch.from_numpy(part).to(dtype) for part in sums)


def mnll_per_region(logits, observed, dtype=None, terms=None, counted=None):
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
    terms, counted : seed.LogitTerms, seed.CountTerms, optional
        ``seed.logit_terms(logits)`` and ``seed.count_terms(observed)`` when already computed; used where numpy
        computes the MNLL (float64 on the CPU).

    Returns
    -------
    joint : torch.Tensor, shape=(n,)
    per_track : torch.Tensor, shape=(n, S)
    track_totals : torch.Tensor, shape=(n, S)
        ``N_s`` in ``dtype``.
    """
    dtype = dtype or logits.dtype
    if logits.device.type == "cpu" and dtype == torch.float64:  # numpy, as a run without torch computes it
        return tuple(torch.from_numpy(part)
                     for part in seed.mnll_per_region(logits.numpy(), observed.numpy(), terms, counted))
    shift, rest = shifted_track_logsumexp(logits, dtype)  # lse_s = shift_s + rest_s; shift 0 unless large
    large = bool(shift.any())
    # each track's share of the joint mass, log_softmax_s(lse_s): of (shift_s - max_t shift_t) + rest_s when shifted
    log_mass = torch.log_softmax(((shift - shift.amax(dim=-1, keepdim=True)) + rest).to(rest.dtype) if large else rest,
                                 dim=-1)
    track_totals, factorials, counts_dot_logits = count_sums(observed, logits, rest.dtype, shift if large else None)
    joint, per_track = mnll_from_sums(rest, log_mass, track_totals, factorials, counts_dot_logits, torch.lgamma)
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
