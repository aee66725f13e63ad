"""The seed losses against an independent float64 reference (numpy/scipy)."""

import numpy as np
import pytest
import torch
from scipy.special import gammaln, log_softmax
from scipy.stats import multinomial

from bpnet_eval.losses import MNLLLoss, _mixture_loss, log1pMSELoss, mixture_loss, mixture_loss_per_region

RTOL64, RTOL32 = 1e-6, 1e-4


def reference_mnll(logps, counts):
    """``-log multinomial pmf``: lgamma terms and k * log p, summed over the last axis (float64)."""
    total = counts.sum(axis=-1)
    return -gammaln(total + 1) + gammaln(counts + 1).sum(axis=-1) - (counts * logps).sum(axis=-1)


def counts_and_logits(shape, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.5, scale, size=shape)).astype(np.float64)
    counts.reshape(-1, shape[-1])[0] = 0                       # an all-zero row
    counts.reshape(-1, shape[-1])[-1] = rng.poisson(20000.0, size=shape[-1])  # very large counts
    logits = rng.normal(0, 2, size=shape) + 11.0               # far from normalised
    return counts, logits


@pytest.mark.parametrize("shape", [(7, 30), (5, 2, 40), (3, 4, 2, 25), (6, 1, 64)])
def test_mnll_matches_reference_any_leading_dims(shape):
    counts, logits = counts_and_logits(shape)
    logps = log_softmax(logits, axis=-1)
    got = MNLLLoss(torch.tensor(logps), torch.tensor(counts)).numpy()
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, reference_mnll(logps, counts), rtol=RTOL64, atol=1e-9)


def test_mnll_is_scipy_multinomial_logpmf():
    counts, logits = counts_and_logits((6, 20), seed=3)
    probs = np.exp(log_softmax(logits, axis=-1))
    expected = [-multinomial.logpmf(k, n=k.sum(), p=p) if k.sum() else 0.0 for k, p in zip(counts, probs)]
    got = MNLLLoss(torch.tensor(np.log(probs)), torch.tensor(counts)).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL64, atol=1e-8)


def test_mnll_zero_counts_is_zero_and_float32_close():
    counts, logits = counts_and_logits((4, 2, 50), seed=5)
    logps = log_softmax(logits, axis=-1)
    got32 = MNLLLoss(torch.tensor(logps, dtype=torch.float32), torch.tensor(counts, dtype=torch.float32)).numpy()
    assert got32[0, 0] == 0.0
    np.testing.assert_allclose(got32, reference_mnll(logps, counts), rtol=RTOL32, atol=1e-3)


def test_log1pmse_averages_every_entry():
    rng = np.random.default_rng(1)
    true = rng.poisson(50, size=(8, 3)).astype(np.float64)
    pred = rng.normal(4, 1, size=(8, 3))
    got = float(log1pMSELoss(torch.tensor(pred), torch.tensor(true)))
    assert got == pytest.approx(np.mean((np.log(true + 1) - pred) ** 2), rel=RTOL64)


def reference_mixture(y, logits, logcounts, weight, labels=None):
    """Joint log-softmax over S*L, MNLL; count target total (or per track); means over regions."""
    n = y.shape[0]
    logps = log_softmax(logits.reshape(n, -1), axis=-1)
    profile = reference_mnll(logps, y.reshape(n, -1))
    target = y.sum(axis=(1, 2))[:, None] if logcounts.shape[1] == 1 else y.sum(axis=2)
    count = np.mean((np.log1p(target) - logcounts) ** 2, axis=1)
    per_region = (profile, count, profile + weight * count)
    if labels is not None:
        profile = profile[labels == 1]
    return per_region, (profile.mean(), count.mean(), profile.mean() + weight * count.mean())


@pytest.mark.parametrize("n_tracks,per_track,weight", [(1, False, 1.0), (2, False, 0.37), (2, True, 25.0),
                                                       (3, True, 1.0)])
def test_mixture_loss_matches_reference(n_tracks, per_track, weight):
    y, logits = counts_and_logits((9, n_tracks, 35), seed=n_tracks)
    rng = np.random.default_rng(7)
    t = n_tracks if per_track else 1
    logcounts = rng.normal(5, 2, size=(9, t))
    (ref_p, ref_c, ref_l), (mean_p, mean_c, mean_l) = reference_mixture(y, logits, logcounts, weight)
    tensors = [torch.tensor(a) for a in (y, logits, logcounts)]
    p, c, l = mixture_loss_per_region(*tensors, count_loss_weight=weight)
    for got, ref in ((p, ref_p), (c, ref_c), (l, ref_l)):
        np.testing.assert_allclose(got.numpy(), ref, rtol=RTOL64, atol=1e-9)
    for got, ref in zip(_mixture_loss(*tensors, weight), (mean_p, mean_c, mean_l)):
        assert float(got) == pytest.approx(ref, rel=RTOL64)


def test_mixture_loss_labels_restrict_profile_term_only():
    y, logits = counts_and_logits((10, 2, 30), seed=11)
    logcounts = np.random.default_rng(2).normal(4, 1, size=(10, 1))
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1])
    _, expected = reference_mixture(y, logits, logcounts, 2.0, labels)
    got = mixture_loss(torch.tensor(y), torch.tensor(logits), torch.tensor(logcounts), 2.0,
                       labels=torch.tensor(labels))
    np.testing.assert_allclose([float(v) for v in got], expected, rtol=RTOL64)


def test_mixture_is_invariant_to_logit_offsets():
    y, logits = counts_and_logits((4, 2, 20), seed=4)
    logcounts = torch.zeros(4, 1, dtype=torch.float64)
    a = mixture_loss_per_region(torch.tensor(y), torch.tensor(logits), logcounts)[0]
    b = mixture_loss_per_region(torch.tensor(y), torch.tensor(logits - 1000.0), logcounts)[0]
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10)
