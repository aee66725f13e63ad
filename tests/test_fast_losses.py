"""The optimised per-region MNLL path equals the seed losses (float64, 1e-10) and a scipy reference."""

import numpy as np
import pytest
import torch
from scipy.special import gammaln, logsumexp, log_softmax

from bpnet_eval.losses import (MNLLLoss, count_sums, dense_count_sums, joint_log_softmax, log_factorial,
                               mnll_per_region, track_logsumexp)


def sparse_case(n, n_tracks, length, seed=0, integer=True):
    """Sparse counts with an all-zero region, a very large one, a track of zeros, unnormalised logits."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(n, n_tracks, length))).astype(np.float64)
    counts[0] = 0
    counts[1] = rng.poisson(20000.0, size=(n_tracks, length))
    counts[2, 0] = 0
    if not integer:
        counts = counts * 1.37
    logits = rng.normal(0, 2, size=(n, n_tracks, length)) + rng.normal(0, 30, size=(n, 1, 1))
    return counts, logits


@pytest.mark.parametrize("n_tracks", [1, 2, 3])
@pytest.mark.parametrize("integer", [True, False])
def test_mnll_per_region_equals_seed(n_tracks, integer):
    counts, logits = sparse_case(30, n_tracks, 80, seed=n_tracks, integer=integer)
    k, z = torch.tensor(counts), torch.tensor(logits)
    joint, per_track, totals = mnll_per_region(z, k)
    np.testing.assert_allclose(totals.numpy(), counts.sum(-1), rtol=1e-12)
    seed_joint = MNLLLoss(joint_log_softmax(z).reshape(30, -1), k.reshape(30, -1))
    seed_per_track = MNLLLoss(torch.log_softmax(z, dim=-1), k)
    np.testing.assert_allclose(joint.numpy(), seed_joint.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(per_track.numpy(), seed_per_track.numpy(), rtol=1e-10, atol=1e-10)


def test_mnll_per_region_against_scipy():
    counts, logits = sparse_case(12, 2, 50, seed=9)
    joint, per_track, _ = mnll_per_region(torch.tensor(logits), torch.tensor(counts))
    flat_counts, flat_logps = counts.reshape(12, -1), log_softmax(logits.reshape(12, -1), axis=-1)
    expected_joint = (-gammaln(flat_counts.sum(-1) + 1) + gammaln(flat_counts + 1).sum(-1)
                      - (flat_counts * flat_logps).sum(-1))
    expected_track = (-gammaln(counts.sum(-1) + 1) + gammaln(counts + 1).sum(-1)
                      - (counts * log_softmax(logits, axis=-1)).sum(-1))
    np.testing.assert_allclose(joint.numpy(), expected_joint, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(per_track.numpy(), expected_track, rtol=1e-9, atol=1e-9)
    assert joint[0].item() == 0.0 and per_track[2, 0].item() == 0.0


def test_track_logsumexp_in_chunks_equals_scipy():
    _, logits = sparse_case(300, 3, 40, seed=2)  # more regions than one chunk, and a partial chunk
    lse = track_logsumexp(torch.tensor(logits, dtype=torch.float32), torch.float64)
    stored = logits.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(lse.numpy(), logsumexp(stored, axis=-1), rtol=1e-12, atol=1e-12)
    assert lse.shape == (300, 3) and lse.dtype == torch.float64
    assert track_logsumexp(torch.zeros(0, 3, 40), torch.float64).shape == (0, 3)


@pytest.mark.parametrize("counts_dtype", [np.float32, np.float64])
def test_count_sums_over_nonzero_counts_equal_dense_sums_also_for_fractions(counts_dtype):
    counts, logits = sparse_case(9, 2, 64, seed=4)
    counts[1, 0, :6] = [0.5, 1.5, 1.0, 2.25, 0.0, 1e-3]  # non-integer values are scored too (with a warning)
    counts = counts.astype(counts_dtype)
    totals, log_factorials, dot = count_sums(torch.tensor(counts), torch.tensor(logits, dtype=torch.float32),
                                             torch.float64)
    exact, stored = counts.astype(np.float64), logits.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(totals.numpy(), exact.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(log_factorials.numpy(), gammaln(exact + 1).sum(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dot.numpy(), (exact * stored).sum(-1), rtol=1e-12, atol=1e-9)
    assert log_factorials.shape == (9, 2) and log_factorials[0, 0] == 0.0 and totals.dtype == torch.float64
    dense = dense_count_sums(torch.tensor(counts), torch.tensor(logits, dtype=torch.float32), torch.float64)
    for got, want in zip(dense, (totals, log_factorials, dot)):  # the GPU's way, checked here on the CPU
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-9)



@pytest.mark.parametrize("counts", [np.arange(0, 4096, dtype=np.float64), np.array([2.0, 5.0, 4095.0, 4096.0, 1e6]),
                                    np.array([0.5, 2.0, 3.25])], ids=["table", "beyond-table", "fractions"])
def test_log_factorial_looked_up_or_computed_equals_gammaln(counts):
    np.testing.assert_allclose(log_factorial(counts), gammaln(counts + 1), rtol=1e-13, atol=1e-13)
