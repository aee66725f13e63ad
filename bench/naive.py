"""The evaluation code users write today, for the benchmark's ``naive_seed`` and ``naive`` stages.

A bpnet-lite-equivalent transcription (torch, float32 as bpnet-lite runs it) of the seed
losses (``bpnetlite.losses``: ``seed_losses``) and of
``bpnetlite.performance.calculate_performance_measures`` (``bpnet_lite_measures``): per-strand
profile MNLL, JSD, Pearson and Spearman per region, and count Pearson, Spearman and MSE across
regions (``count_measures``). ``naive_seed`` computes the seed losses and the count statistics
only; ``naive`` adds the per-strand measures. Written from the published definitions (see
``../shared/docs/reference.md``); it does not import bpnet-eval.
"""

import torch


def mnll_loss(logps, true_counts):
    """``-lgamma(N+1) + sum lgamma(k+1) - sum k logp`` over the last axis."""
    log_fact_sum = torch.lgamma(torch.sum(true_counts, dim=-1) + 1)
    log_prod_fact = torch.sum(torch.lgamma(true_counts + 1), dim=-1)
    log_prod_exp = torch.sum(true_counts * logps, dim=-1)
    return -log_fact_sum + log_prod_fact - log_prod_exp


def seed_losses(true_counts, logits, logcounts):
    """Per region: joint MNLL (one log_softmax over both strands), log1p MSE of the total, their sum."""
    n = logits.shape[0]
    logps = torch.log_softmax(logits.reshape(n, -1), dim=-1)
    profile = mnll_loss(logps, true_counts.reshape(n, -1))
    total = true_counts.sum(dim=(1, 2)).reshape(n, 1)
    count = torch.mean(torch.square(torch.log(total + 1) - logcounts), dim=-1)
    return {"mnll_joint": profile, "log1p_mse": count, "mixture_loss": profile + count}


def _kl_divergence(probs1, probs2):
    idxs = (probs1 != 0) & (probs2 != 0)
    quot_ = torch.divide(probs1, probs2)
    quot = torch.ones_like(probs1)
    quot[idxs] = quot_[idxs]
    return torch.sum(probs1 * torch.log(quot), dim=-1)


def jensen_shannon_distance(logps, true_counts):
    """bpnet-lite's JSD (a divergence, in nats) between predicted and observed profiles."""
    probs = torch.exp(logps)
    true_probs = true_counts / true_counts.sum(dim=-1, keepdims=True)
    mid = 0.5 * (probs + true_probs)
    return 0.5 * (_kl_divergence(probs, mid) + _kl_divergence(true_probs, mid))


def pearson_corr(arr1, arr2):
    """Pearson over the last axis; 0 where a variance is 0."""
    dev1 = arr1 - arr1.mean(dim=-1, keepdim=True)
    dev2 = arr2 - arr2.mean(dim=-1, keepdim=True)
    numer = torch.sum(dev1 * dev2, dim=-1)
    denom = torch.sqrt(torch.sum(dev1 ** 2, dim=-1) * torch.sum(dev2 ** 2, dim=-1))
    correlation = torch.zeros_like(numer)
    nonzero = denom != 0
    correlation[nonzero] = numer[nonzero] / denom[nonzero]
    return correlation


def spearman_corr(arr1, arr2):
    """Spearman with ordinal ranks (argsort of argsort), as bpnet-lite."""
    ranks1 = arr1.argsort().argsort().type(torch.float32)
    ranks2 = arr2.argsort().argsort().type(torch.float32)
    return pearson_corr(ranks1, ranks2)


def bpnet_lite_measures(logps, true_counts):
    """The per-region columns of ``calculate_performance_measures``: shape (n, S) each."""
    return {"profile_mnll": mnll_loss(logps, true_counts),
            "profile_jsd": jensen_shannon_distance(logps, true_counts),
            "profile_pearson": pearson_corr(logps.exp(), true_counts),
            "profile_spearman": spearman_corr(logps, true_counts)}


def count_measures(pred_log_counts, total_counts):
    """Count Pearson, Spearman and MSE across regions against ``log(1 + total)``."""
    total_log_counts = torch.log(total_counts.reshape(-1, 1) + 1)
    return {"count_pearson": pearson_corr(pred_log_counts.T, total_log_counts.T).ravel()[0],
            "count_spearman": spearman_corr(pred_log_counts.T, total_log_counts.T).ravel()[0],
            "count_mse": torch.mean(torch.square(total_log_counts - pred_log_counts))}
