"""The optimised per-region MNLL path equals the seed losses (float64, 1e-10) and a scipy reference."""

import numpy as np
import pytest
import torch
from scipy.special import gammaln, logsumexp, log_softmax

from bpnet_eval.losses import (MNLLLoss, count_sums, dense_count_sums, joint_log_softmax,
                               mnll_per_region, track_logsumexp)
from bpnet_eval.seed import log_factorial


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


def mpmath_logsumexp(row) -> float:
    """``ln sum_i exp(z_i)`` with 50 digits (mpmath), from the values as given."""
    import mpmath

    with mpmath.workdps(50):
        finite = [mpmath.mpf(float(z)) for z in row if np.isfinite(z)]
        if any(z == np.inf for z in row):
            return np.inf
        if not finite:
            return -np.inf
        top = max(finite)
        return float(top + mpmath.log(mpmath.fsum(mpmath.exp(z - top) for z in finite)))


def hostile_logit_rows(dtype):
    """Rows a logsumexp can get wrong: huge and tiny magnitudes, wide ranges, ties, -inf, one value, L = 2114."""
    rng = np.random.default_rng(7)
    rows = [rng.normal(0, 2, 1000), rng.normal(0, 30, 1000) + 700, np.full(1000, 1e30), np.full(1000, -1e30),
            np.r_[1e30, np.zeros(999)], np.r_[-1e30, np.zeros(999)], np.full(1000, 88.0), np.full(1000, -745.0),
            np.r_[np.full(999, -np.inf), 3.0], np.full(1000, -np.inf), np.r_[5e-324, np.zeros(999)],
            np.linspace(-1e4, 1e4, 1000), np.r_[np.full(500, 1e-8), np.full(500, -1e-8)],
            rng.normal(0, 1, 1000) * 1e-7 + 1e5, np.full(1000, np.float32(3.4e38) if dtype == np.float32 else 1e308)]
    rows = [np.resize(r, 2114) for r in rows[:3]] + rows  # three rows of L = 2114 (fitted below)
    return [np.asarray(r, dtype=dtype) for r in rows]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float64_logsumexp_is_exact_to_float64_rounding_on_hostile_rows(dtype):
    from bpnet_eval.seed import float64_logsumexp

    for row in hostile_logit_rows(dtype):
        got, want = float(float64_logsumexp(row[None, :])[0]), mpmath_logsumexp(row)
        if not np.isfinite(want):
            assert got == want, (row[:3], got, want)
            continue
        assert abs(got - want) <= 4e-16 * max(1.0, abs(want)) * np.log2(len(row)), (row[:3], got, want)


def test_cpu_track_logsumexp_equals_torch_logsumexp_to_float64_rounding():
    """The numpy path of the CPU (float64) agrees with torch's float64 ``logsumexp`` (the GPU's way)."""
    rng = np.random.default_rng(3)
    stored = (rng.normal(0, 3, size=(300, 2, 1000)) + rng.normal(0, 50, size=(300, 1, 1))).astype(np.float32)
    ours = track_logsumexp(torch.from_numpy(stored), torch.float64).numpy()
    theirs = torch.logsumexp(torch.from_numpy(stored).to(torch.float64), dim=-1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=1e-13)
