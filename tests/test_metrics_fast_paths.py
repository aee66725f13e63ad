"""The fast paths of the metrics give the numbers of their plain definitions: ranks by histogram vs scipy,
inverse permutations vs a second sort, numpy's sorts vs torch's, batches computed in cache-sized pieces vs
region by region."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

from bpnet_eval.metrics import PROFILE_METRICS_ALL, PROFILE_PRESETS, average_ranks, ordinal_ranks, profile_metrics
from bpnet_eval.metrics.correlation import (SPARSE_COUNT_SHARE, argsort_ranks, count_ranks, small_count_top,
                                           sorted_average_ranks, sparse_count_ranks)
from bpnet_eval.metrics.auprc import average_precision, precision_terms
from bpnet_eval.losses import MNLLLoss
from bpnet_eval.metrics.profile import (SPARSE_FRACTION, chunk_rows, cross_entropy, keyed_orders, kl_divergence, mnll,
                                        normalised, normalised_jsd_divergence, region_keys)
from bpnet_eval.metrics.sorting import any_order, distinct_order, orders_by_track, stable_order, torch_order


def counts_with_ties(shape, seed=0):
    """Sparse integer counts: mostly zeros, a few piles, an empty row, a constant row, one large count."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=shape)).astype(np.float64)
    counts[0] = 0
    counts[1] = 3
    counts[2, ..., 0] = 4 * shape[-1]  # the largest value the histogram path takes
    return counts


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_count_ranks_equal_scipy_average_ranks(dtype):
    counts = counts_with_ties((9, 2, 40))
    x = torch.as_tensor(counts, dtype=dtype)
    assert small_count_top(x) == 160
    got = average_ranks(x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.double().numpy(), rankdata(counts, method="average", axis=-1))
    assert torch.equal(got, sorted_average_ranks(x))


@pytest.mark.parametrize("values", [
    np.array([[0.5, 0.0, 2.0, 2.0]]),  # not integers
    np.array([[-1.0, 0.0, 2.0, 2.0]]),  # negative
    np.array([[0.0, 17.0, 2.0, 2.0]]),  # beyond 4 n
    np.array([[np.nan, 0.0, 1.0, 1.0]]),
    np.array([[np.inf, 0.0, 1.0, 1.0]]),
])
def test_values_outside_the_histogram_path_are_sorted(values):
    x = torch.as_tensor(values)
    assert small_count_top(x) is None
    got = average_ranks(x).numpy()
    nan = np.isnan(values)
    assert np.isnan(got[nan]).all()
    # NaN ranks last, as a sort puts it
    np.testing.assert_array_equal(got[~nan], rankdata(np.where(nan, np.inf, values), axis=-1)[~nan])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.1, 0.2])
def test_sparse_count_ranks_equal_the_histograms(dtype, density, monkeypatch):
    """Mostly-zero counts ranked from their nonzero values: the histogram's numbers bit for bit and scipy's, with
    empty rows, rows without a zero, ties among the nonzero values and the largest value the histogram takes."""
    rng = np.random.default_rng(18)
    counts = (rng.poisson(2.0, size=(30, 2, 200)) * (rng.random((30, 2, 200)) < density)).astype(dtype)
    counts[1, 1, :] = 0
    counts[2, 0, :3] = 4 * 200 if density != 0.1 else 20  # a large count, or only small ones (the histogram)
    counts[3, 1, :] = 1  # no zero in the row
    counts[4, 0, :5] = 7  # tied nonzero values
    top = int(counts.max())
    sparse = sparse_count_ranks(counts, top)
    if (counts != 0).mean() > SPARSE_COUNT_SHARE + (top + 1) / 4 / counts.shape[-1] or (top + 1) * 8 <= 200:
        assert sparse is None
        return
    np.testing.assert_array_equal(sparse, rankdata(counts, method="average", axis=-1).astype(dtype))
    assert torch.equal(count_ranks(torch.as_tensor(counts), top), torch.from_numpy(sparse))
    from bpnet_eval.metrics import correlation
    monkeypatch.setattr(correlation, "by_numpy", lambda x: False)  # the histogram, as on a GPU
    histogram = count_ranks(torch.as_tensor(counts), top).numpy()
    assert histogram.dtype == sparse.dtype and histogram.tobytes() == sparse.tobytes()


def test_count_ranks_of_a_batch_match_row_by_row():
    counts = counts_with_ties((6, 25), seed=3)
    top = int(counts.max())
    got = count_ranks(torch.as_tensor(counts), top).numpy()
    for row, values in zip(got, counts):
        np.testing.assert_array_equal(row, rankdata(values))


def test_spearman_of_counts_with_histogram_ranks_equals_scipy():
    rng = np.random.default_rng(5)
    counts = counts_with_ties((5, 60), seed=5)
    p = rng.random((5, 60))
    p[3, :30] = p[3, 0]  # tied predictions too
    from bpnet_eval.metrics import spearman
    got = spearman(torch.as_tensor(p), torch.as_tensor(counts)).numpy()
    expected = [spearmanr(a, b)[0] for a, b in zip(p, counts)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_ordinal_and_argsort_ranks_invert_the_sort():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(7, 300)), 1)  # many ties
    t = torch.as_tensor(x)
    np.testing.assert_array_equal(ordinal_ranks(t).numpy(), rankdata(x, method="ordinal", axis=-1))
    # bpnet-lite's own expression, as its code writes it, on the same values
    assert torch.equal(argsort_ranks(t), t.argsort().argsort().to(torch.float32))
    assert torch.equal(argsort_ranks(t.float()), t.float().argsort().argsort().to(torch.float32))


@pytest.mark.parametrize("preset,smooth", [(name, False) for name in sorted(PROFILE_PRESETS)] + [("default", True)])
def test_batches_in_pieces_equal_region_by_region(preset, smooth):
    rng = np.random.default_rng(2)
    n_tracks, length = 2, 1200
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(120, n_tracks, length))).astype(np.float64)
    counts[4] = 0
    counts[7, 0] = 0
    counts[9, :, 100:120] += 400  # passes BPNet's auPRC depth filter
    logits = np.round(rng.normal(size=counts.shape), 1) + np.log(counts + 1)
    options = dict(PROFILE_PRESETS[preset], smooth_predictions=smooth, smooth_observed=smooth)
    z, k = torch.as_tensor(logits), torch.as_tensor(counts)
    rows = torch.arange(len(z)) + 1000
    assert chunk_rows(z.shape) < len(z)  # the batch is computed in pieces
    whole = profile_metrics(z, k, names=PROFILE_METRICS_ALL, rows=rows, seed=4, **options)
    for i in (0, 4, 7, 9, 119):
        one = profile_metrics(z[i:i + 1], k[i:i + 1], names=PROFILE_METRICS_ALL, rows=rows[i:i + 1], seed=4,
                              **options)
        for name, column in one.items():
            assert torch.equal(torch.nan_to_num(whole[name][i:i + 1], nan=-7.0), torch.nan_to_num(column, nan=-7.0)), name


def test_a_gpu_takes_a_default_batch_in_one_piece_with_the_same_numbers(monkeypatch):
    """Off the CPU a piece holds a default batch whole (each piece costs hundreds of kernel launches); the numbers
    do not depend on the piece size (here on the CPU, with the GPU's piece size)."""
    from bpnet_eval.metrics import profile

    shape = (1024, 2, 1000)
    assert chunk_rows(shape, torch.device("cuda")) >= 1024 and chunk_rows(shape, "cuda:1") >= 1024
    assert chunk_rows(shape) == chunk_rows(shape, torch.device("cpu")) == chunk_rows(shape, "cpu") < 1024
    rng = np.random.default_rng(8)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(150, 2, 1000))).astype(np.float64)
    counts[5] = 0
    z, k = torch.as_tensor(rng.normal(size=counts.shape) + np.log1p(counts)), torch.as_tensor(counts)
    rows = torch.arange(len(z))
    pieces = profile_metrics(z, k, names=PROFILE_METRICS_ALL, rows=rows, seed=2)
    monkeypatch.setattr(profile, "CHUNK_VALUES", profile.DEVICE_CHUNK_VALUES)
    assert chunk_rows(z.shape) >= len(z)
    whole = profile_metrics(z, k, names=PROFILE_METRICS_ALL, rows=rows, seed=2)
    for name, column in pieces.items():
        assert torch.equal(torch.nan_to_num(whole[name], nan=-7.0), torch.nan_to_num(column, nan=-7.0)), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64])
def test_stable_order_is_torchs_stable_sort(dtype):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 6, size=(40, 2, 257)).astype(np.float64)
    if dtype.is_floating_point:
        x[rng.random(x.shape) < 0.05] = np.nan  # NaNs last, by position
        x[rng.random(x.shape) < 0.05] = -0.0  # equal to 0.0
        x[3] = np.nan
    t = torch.as_tensor(x).to(dtype)
    for view in (t, t.transpose(0, 1), t[:, :, ::3]):  # contiguous or not
        assert torch.equal(stable_order(view), torch.sort(view, dim=-1, stable=True).indices)
    assert stable_order(t[:, :, :0]).shape == (40, 2, 0)


def test_any_order_sorts_and_equals_argsort_for_distinct_keys():
    keys = region_keys((30, 2, 500), torch.arange(30) + 77, seed=3)
    assert torch.equal(any_order(keys), torch.argsort(keys, dim=-1))
    x = torch.as_tensor(np.round(np.random.default_rng(7).normal(size=(9, 400)), 1))
    assert torch.equal(torch.gather(x, -1, any_order(x)), torch.sort(x, dim=-1).values)


def stable_sort_precision_terms(labels, scores):
    """``precision_terms`` as first written: torch's stable descending sort, each positive's precision at its place
    in it, 0 elsewhere."""
    keep = (labels >= 0) & ~torch.isnan(scores)
    sorted_scores, order = torch.sort(torch.where(keep, scores, -torch.inf), dim=-1, descending=True, stable=True)
    positive = torch.gather((labels == 1) & keep, -1, order)
    true_pos = torch.cumsum(positive, dim=-1)
    called = torch.cumsum(torch.gather(keep, -1, order), dim=-1)
    n = scores.shape[-1]
    ends_tie = torch.ones_like(positive)
    ends_tie[..., :-1] = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    position = torch.arange(n).expand_as(order)
    tie_end = torch.cummin(torch.where(ends_tie, position, n - 1).flip(-1), dim=-1).values.flip(-1)
    precision = (torch.gather(true_pos, -1, tie_end).to(scores.dtype)
                 / torch.gather(called, -1, tie_end).to(scores.dtype))
    return torch.where(positive, precision, 0.0)


def stable_sort_average_precision(labels, scores):
    """``average_precision`` as first written: the sum of ``stable_sort_precision_terms`` over the positives."""
    n_positive = ((labels == 1) & (labels >= 0) & ~torch.isnan(scores)).sum(dim=-1).to(scores.dtype)
    ap = torch.sum(stable_sort_precision_terms(labels, scores), dim=-1) / n_positive
    return torch.where(n_positive > 0, ap, float("nan"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("decimals", [None, 2, 1])  # distinct scores, some ties, many ties (the stable path)
def test_average_precision_bit_equals_the_stable_sort(dtype, decimals):
    """Any float dtype (bfloat16, which numpy lacks, ordered as float32; precisions divided in the dtype), 1-D to
    3-D."""
    rng = np.random.default_rng(8)
    labels = torch.as_tensor(rng.choice([1, 0, 0, 0, -1], size=(50, 2, 300)))
    scores = rng.random(labels.shape)
    scores = torch.as_tensor(scores if decimals is None else np.round(scores, decimals), dtype=dtype)
    scores[3, 0, :10] = torch.nan
    scores[4, 1, :7] = -torch.inf  # kept, tied with the entries left out
    labels[5] = 0  # no positive: NaN
    for lab, sc in ((labels, scores), (labels.flatten(1), scores.flatten(1)), (labels[0, 0], scores[0, 0])):
        got, expected = average_precision(lab, sc), stable_sort_average_precision(lab, sc)
        assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(expected, nan=-1.0))


def prefix_case(seed, rows=150, n=400, decimals=None, dtype=torch.float64):
    """Labels and scores where the positives mostly score high (short prefixes), with rows whose lowest positive
    scores low (long prefixes), no positive, a positive scoring -inf or +inf, NaN scores, ambiguous entries, and
    negatives tied with the lowest positive."""
    rng = np.random.default_rng(seed)
    labels = torch.as_tensor(rng.choice([1, 0, -1], size=(rows, n), p=[.03, .94, .03]))
    logits = rng.normal(size=(rows, n)) + 8.0 * (labels.numpy() == 1) * (rng.random((rows, 1)) < 0.6)
    scores = torch.softmax(torch.as_tensor(logits if decimals is None else np.round(logits, decimals), dtype=dtype),
                           dim=-1)
    labels[3] = 0  # no positive: NaN
    labels[4, 0], scores[4, 1] = -1, torch.nan  # left out, before ...
    labels[4, 5:10] = 1
    scores[4, 7] = -torch.inf  # ... a positive tied with them (they sort as -inf)
    labels[5, 7] = 1
    scores[5, 7] = torch.inf
    scores[6, :30] = torch.nan
    labels[7, :3] = 1  # the lowest positive tied with negatives
    scores[7, :40] = scores[7, 2]
    labels[8] = 1  # every entry positive
    return labels, scores


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_average_precision_sorts_each_rows_start_up_to_its_last_positive(monkeypatch, decimals, dtype):
    """``average_precision`` and its terms against the stable-sort reference on rows of every prefix length (more
    rows than a group): it sorts rows no longer than the longest prefix among them, short where the positives score
    high, and whole rows where a positive scores -inf."""
    from bpnet_eval.metrics import auprc
    labels, scores = prefix_case(35, decimals=decimals, dtype=dtype)
    widths = []
    real = auprc._precisions_in_order
    monkeypatch.setattr(auprc, "_precisions_in_order", lambda lab, sc: widths.append(sc.shape[-1]) or real(lab, sc))
    assert torch.equal(precision_terms(labels, scores), stable_sort_precision_terms(labels, scores))
    widths.clear()
    got, expected = average_precision(labels, scores), stable_sort_average_precision(labels, scores)
    assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(expected, nan=-1.0))
    assert torch.isnan(got[3]) and int(torch.isnan(got).sum()) == 1
    assert len(widths) == -(-int((labels == 1).any(dim=-1).sum()) // auprc.PREFIX_GROUP_ROWS) >= 3
    assert min(widths) < labels.shape[-1] // 4 and max(widths) == labels.shape[-1]
    assert bool((labels[4:] == 1).any(dim=-1).all())  # every row with a positive: its rows taken as they are
    for lab, sc in ((labels[:40].reshape(2, 20, -1), scores[:40].reshape(2, 20, -1)), (labels[9], scores[9]),
                    (labels[4:], scores[4:])):
        assert torch.equal(torch.nan_to_num(average_precision(lab, sc), nan=-1.0),
                           torch.nan_to_num(stable_sort_average_precision(lab, sc), nan=-1.0))


AUPRC_NAMES = ["profile_spearman", "profile_auprc_bin1", "profile_auprc_bin10"]


def auprc_case(tracks, seed):
    """Counts with a pile in every region (most pass BPNet's mask) and tied logits."""
    rng = np.random.default_rng(seed)
    counts = torch.as_tensor(rng.poisson(rng.gamma(0.5, 4.0, size=(20, tracks, 300))).astype(np.float64))
    counts[:, :, 140:160] += 40
    logits = torch.as_tensor(np.round(rng.normal(size=(20, tracks, 300)), 2))
    return counts, logits


@pytest.mark.parametrize("smooth", [False, True])
def test_profile_auprc_equals_the_stable_sort_of_each_view(smooth):
    """``profile_metrics``' auPRC of both views and bin sizes (with the Spearman beside, which sorts the same
    probabilities; predictions smoothed or not, which the auPRC's scores never are) bit-equal the stable-sort
    reference and the numbers each gives alone."""
    from bpnet_eval.metrics.auprc import auprc_region_mask, binned_labels_scores
    counts, logits = auprc_case(2, seed=36)
    got = profile_metrics(logits, counts, AUPRC_NAMES, ["plus", "minus"], smooth_predictions=smooth)
    alone = profile_metrics(logits, counts, ["profile_auprc_bin1"], ["plus", "minus"], smooth_predictions=smooth)
    for name in ("profile_auprc_bin1_plus", "profile_auprc_bin1_minus", "profile_auprc_bin1"):
        assert same_numbers(got[name], alone[name])
    mask = auprc_region_mask(counts)
    probs = torch.exp(torch.log_softmax(logits[mask], dim=-1))
    for binsize in (1, 10):
        labels, scores = binned_labels_scores(counts[mask], probs, binsize)
        assert mask.sum() > 10 and same_numbers(got[f"profile_auprc_bin{binsize}"][mask],
                                                stable_sort_average_precision(labels.flatten(1), scores.flatten(1)))
        for s, track in enumerate(("plus", "minus")):
            assert same_numbers(got[f"profile_auprc_bin{binsize}_{track}"][mask],
                                stable_sort_average_precision(labels[:, s], scores[:, s]))


def splitmix64(x):
    """splitmix64's output function of one 64-bit integer (Python ints, modulo 2**64), written from its
    definition: ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``."""
    mask = (1 << 64) - 1
    z = x & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


@pytest.mark.parametrize("seed", [0, 3, -7, 2**62 + 11])
def test_region_keys_are_splitmix64_of_seed_row_and_position(seed):
    """Key of element ``i`` of the region at global row ``r``: splitmix64 of ``r * per_region + i + (seed + 1) *
    0x9E3779B97F4A7C15`` modulo 2**64, as int64 bits, from numpy's uint64 arithmetic on the CPU and from torch's
    int64 arithmetic (the path of other devices), whatever the row numbers' size."""
    from bpnet_eval.metrics.profile import _region_keys_torch

    rows = torch.tensor([0, 1, 77, 2**31 + 5, 2**40 + 3])
    shape = (5, 3, 7)
    want = np.array([[splitmix64(int(r) * 21 + i + (seed + 1) * 0x9E3779B97F4A7C15) for i in range(21)]
                     for r in rows.tolist()], dtype=np.uint64).view(np.int64).reshape(shape)
    got = region_keys(shape, rows, seed)
    assert got.dtype == torch.int64 and got.shape == shape
    np.testing.assert_array_equal(got.numpy(), want)
    salt = (seed + 1) * 0x9E3779B97F4A7C15 % (1 << 64)
    np.testing.assert_array_equal(_region_keys_torch(shape, rows, salt).numpy(), want)


def test_keyed_orders_of_both_views_equal_their_own_sorts():
    rows = torch.arange(12) + 345
    joint, per_track = keyed_orders((12, 3, 200), rows, seed=9)
    assert torch.equal(joint, torch.argsort(region_keys((12, 600), rows, seed=9), dim=-1))
    assert torch.equal(per_track, torch.argsort(region_keys((12, 3, 200), rows, seed=9), dim=-1))


def keys_sharing_high_bits(n, seed):
    """Distinct int64 keys of rows of ``n``, each row with values that share their high 32 bits (what
    ``distinct_order`` sorts first) in pairs and in runs of three, in and out of order, at both ends of int64."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(-2**63, 2**63 - 1, size=(12, n), dtype=np.int64)
    if n < 8:  # too short for the rows below
        return keys
    keys[0, :2] = [-2**63 + 5, -2**63]  # a pair at the lowest high bits, the later one smaller
    keys[1, :2] = [2**63 - 1, 2**63 - 9]  # and at the highest
    keys[2, 3:5] = [(7 << 40) + 100, (7 << 40) + 3]  # a pair out of order...
    keys[3, 3:5] = [(7 << 40) + 3, (7 << 40) + 100]  # ...and in order
    keys[4, [1, n // 2, n - 1]] = [(-9 << 40) + 30, (-9 << 40) + 20, (-9 << 40) + 10]  # a run of three
    keys[5, :n // 2] = (np.arange(n // 2) * 1000)[::-1]  # everything in one high word: every entry tied there
    keys[6] = np.arange(n, dtype=np.int64) * -3  # descending, near 0
    return keys


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 2000, 2114, 4096, 65536, 65537])
def test_distinct_order_is_the_argsort_of_distinct_keys(n):
    keys = torch.as_tensor(keys_sharing_high_bits(n, n))
    assert (torch.sort(keys, dim=-1).values.diff(dim=-1) != 0).all()
    assert torch.equal(distinct_order(keys), torch.argsort(keys, dim=-1))
    as_tracks = keys[:, :n - n % 2].reshape(12, 2, -1)
    assert torch.equal(distinct_order(as_tracks), torch.argsort(as_tracks, dim=-1))
    assert distinct_order(keys[:0]).shape == (0, n)


def test_distinct_order_keys_with_many_shared_words_per_row():
    """Rows with ~150 pairs sharing their high word (pairs swapped in place) and rows of ~15 values a word (runs:
    each such row sorted whole): every row ordered exactly."""
    rng = np.random.default_rng(21)
    keys = rng.integers(-2**63, 2**63 - 1, size=(40, 1500), dtype=np.int64)
    keys[:20, 1::10] = keys[:20, ::10] ^ rng.integers(1, 1 << 40, size=(20, 150))  # same high 21 bits (of 64)
    high = rng.integers(-50, 50, size=(20, 1500), dtype=np.int64) << 43
    keys[20:] = high + rng.integers(0, 1 << 43, size=high.shape)
    assert all(len(np.unique(row)) == 1500 for row in keys)
    words = keys >> 43
    assert (np.sort(words[:20], axis=-1)[:, 1:] == np.sort(words[:20], axis=-1)[:, :-1]).sum() >= 20 * 150
    assert torch.equal(distinct_order(torch.as_tensor(keys)), torch.argsort(torch.as_tensor(keys), dim=-1))


@pytest.mark.parametrize("tracks", [1, 2, 3])
@pytest.mark.parametrize("on_cpu", [True, False])
def test_orders_by_track_of_the_joint_order_are_each_tracks_order(monkeypatch, tracks, on_cpu):
    from bpnet_eval.metrics import sorting
    monkeypatch.setattr(sorting, "by_numpy", lambda x: on_cpu)
    keys = region_keys((25, tracks, 300), torch.arange(25) + 4, seed=2)
    joint = torch.argsort(keys.flatten(1), dim=-1)
    assert torch.equal(orders_by_track(joint, tracks), torch.argsort(keys, dim=-1))
    assert torch.equal(distinct_order(keys.flatten(1)), joint)


def test_torch_order_is_torchs_argsort():
    rng = np.random.default_rng(10)
    x = torch.as_tensor(rng.random((30, 2, 400)))
    x[3, 1, :50] = 0.5  # rows with ties take torch's own tie order
    x[7, 0, 9] = torch.nan
    x[8, 1, 5] = x[8, 1, 6]
    for view in (x, x.float(), x.transpose(0, 1), torch.round(x * 10)):
        assert torch.equal(torch_order(view), torch.argsort(view, dim=-1))


@pytest.mark.parametrize("function", [torch.log, torch.lgamma])
def test_torch_log_and_lgamma_are_elementwise_whatever_the_position(function):
    """The sparse sums rely on it: a value's logarithm has the same bits in a long tensor (vectorised body) as
    alone or in a short tail; lgamma(1) is +0."""
    x = torch.as_tensor(np.exp(np.random.default_rng(11).uniform(-30, 5, 20_003)))
    x[::5] = torch.round(x[::5] * 100)  # counts too
    whole = function(x)
    assert torch.equal(torch.cat([function(x[i:i + 1]) for i in range(0, 2000)]), whole[:2000])
    assert torch.equal(torch.cat([function(x[i:i + 7]) for i in range(0, 20_003, 7)]), whole)
    assert not torch.signbit(torch.lgamma(torch.ones(20, dtype=torch.float64))).any()


@pytest.mark.parametrize("density", [0.02, SPARSE_FRACTION, 0.9])
@pytest.mark.parametrize("empty_rows", [1, 30])
def test_kl_divergence_and_cross_entropy_of_sparse_profiles_bit_equal_the_dense_formulas(density, empty_rows):
    rng = np.random.default_rng(12)
    k = rng.poisson(3.0, size=(40, 2, 500)) * (rng.random((40, 2, 500)) < density)
    k[0] = 0  # no counts: NaN
    k[40 - empty_rows:] = 0  # most rows without counts: NaN rows, not counted as nonzero
    k[1, 0, 3] = -0.0
    p = torch.as_tensor(k / k.sum(axis=-1, keepdims=True))
    q = torch.as_tensor(rng.dirichlet(np.ones(500), size=(40, 2)))
    q[2, 1, :] = 0  # log(p / 0) = inf where p > 0
    q[3, 0, 7] = np.nan
    dense_profiles = torch.as_tensor(rng.dirichlet(np.ones(500), size=(40, 2)))
    for a, b in ((p, q), (q, p), (dense_profiles, q), (p.transpose(0, 1), q.transpose(0, 1))):
        dense = torch.sum(a * torch.log(torch.where(a == 0, 1.0, a / b)), dim=-1)
        assert same_bits(kl_divergence(a.contiguous(), b.contiguous()), dense)
        assert torch.equal(torch.nan_to_num(kl_divergence(a, b), nan=-1.0), torch.nan_to_num(dense, nan=-1.0))
        log_b = torch.log(b)  # -inf where b = 0
        dense = -torch.sum(torch.where(a == 0, 0.0, a * log_b), dim=-1)
        dense = torch.where(torch.sum(a, dim=-1) == 0, torch.nan, dense)
        assert torch.equal(torch.nan_to_num(cross_entropy(log_b, a), nan=-1.0), torch.nan_to_num(dense, nan=-1.0))
    counts = torch.as_tensor(k, dtype=torch.float64)
    log_p = torch.log_softmax(torch.as_tensor(rng.normal(size=k.shape)), dim=-1)
    log_p[5, 0, :3] = -torch.inf  # 0 * -inf: NaN, as MNLLLoss
    for c, z in ((counts, log_p), (counts + 1, log_p), (counts.transpose(0, 1), log_p.transpose(0, 1))):
        assert torch.equal(torch.nan_to_num(mnll(z, c), nan=-1.0), torch.nan_to_num(MNLLLoss(z, c), nan=-1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_terms_and_midpoints_in_place_are_the_expressions_bit_for_bit(dtype):
    """The JSD's terms computed in place on one temporary (``kl_terms``, ``midpoint``) are the expressions written out,
    bit for bit, on every pair of special values: zeros of both signs, subnormals, the largest value, inf, NaN."""
    from bpnet_eval.metrics.profile import kl_terms, midpoint
    info = torch.finfo(dtype)
    special = [0.0, -0.0, info.tiny * info.eps, 3 * info.tiny * info.eps, info.tiny, 0.3, 1.0, info.max, torch.inf,
               -1.0, torch.nan]
    values = torch.as_tensor(np.random.default_rng(16).random(200) * 2.0 ** -20, dtype=dtype)
    p = torch.cat([torch.tensor(special, dtype=dtype).repeat_interleave(len(special)), values])
    q = torch.cat([torch.tensor(special, dtype=dtype).repeat(len(special)), values.flip(0)])
    assert same_bits(kl_terms(p, q), p * torch.log(p / q))
    assert same_bits(kl_terms(p, q, zero=p == 0), p * torch.log(torch.where(p == 0, 1.0, p / q)))
    assert same_bits(midpoint(p, q), (p + q) / 2)


def dense_jsd(a, b):
    """The JSD of two profiles summing to 1 as written: every term, ``0 ln 0 = 0``, natural log."""
    m = (a + b) / 2
    kl = lambda x: torch.sum(x * torch.log(torch.where(x == 0, 1.0, x / m)), dim=-1)
    return (kl(a) + kl(b)) / 2


def same_bits(x, y):
    """Equal tensors, NaN for NaN with the same sign and payload."""
    return x.dtype == y.dtype and x.shape == y.shape and x.numpy().tobytes() == y.numpy().tobytes()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("density", [0.002, 0.05, SPARSE_FRACTION, 0.6])
@pytest.mark.parametrize("empty_rows", [1, 36])
def test_jsd_from_the_nonzero_observed_positions_bit_equals_every_term(dtype, density, empty_rows):
    """The JSD with a mostly-zero side (observed, shuffled observed) takes ``a ln 2`` where the other side is 0: the
    same bits as every term written out, NaN's bits too, for predictions, the uniform profile and two sparse
    profiles; with NaN, empty rows (NaN: most of them, as windows without reads), zero and subnormal predicted
    probabilities (whose halves round: the dense formula then). The one row where a half rounds to 0, whose term
    written out is inf, is the JSD of the profiles scaled by 2**60 (where nothing rounds to 0), scaled back."""
    rng = np.random.default_rng(14)
    k = rng.poisson(3.0, size=(48, 2, 400)) * (rng.random((48, 2, 400)) < density)
    k[0] = 0  # no counts: NaN
    k[48 - empty_rows:] = 0
    k[1, 0, :] = 5  # one dense track
    k[3, 0, 5] = 0
    q = normalised(torch.as_tensor(k, dtype=dtype))
    logits = torch.as_tensor(rng.normal(0, 3, size=k.shape), dtype=dtype)
    logits[2, 1, :40] = -60.0  # probabilities that underflow to 0 (float32) or stay tiny
    p = normalised(torch.softmax(logits, dim=-1))
    shuffled = normalised(torch.as_tensor(rng.permuted(k, axis=-1), dtype=dtype))
    subnormal = p.clone()
    subnormal[3, 0, 5] = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # its half rounds to 0: a term of inf
    nan_row = p.clone()
    nan_row[4, 1, 9] = torch.nan
    no_zero = normalised(torch.as_tensor(k + 1, dtype=dtype))  # neither side with a zero: no mask at all
    for a, b in ((p, q), (q, p), (torch.full_like(q, 1 / 400), q), (p, shuffled), (q, shuffled), (shuffled, q),
                 (nan_row, q), (p.flatten(1), q.flatten(1)), (q[:, 0], q[:, 1]), (p, no_zero), (no_zero, nan_row)):
        a, b = a.contiguous(), b.contiguous()
        assert same_bits(normalised_jsd_divergence(a, b), dense_jsd(a, b))
    for a, b in ((subnormal, q), (q, subnormal)):
        written_out, jsd = dense_jsd(a, b), normalised_jsd_divergence(a, b)
        assert torch.isinf(written_out[3, 0]) and torch.isfinite(jsd[3, 0])
        scaled = dense_jsd(a[3, 0] * 2.0 ** 60, b[3, 0] * 2.0 ** 60) / 2.0 ** 60
        assert float(scaled) > 0 and abs(float(jsd[3, 0]) / float(scaled) - 1) < (1e-5 if dtype == torch.float32 else 1e-12)
        rows = torch.ones(jsd.shape, dtype=torch.bool)
        rows[3, 0] = False
        assert same_bits(jsd[rows], written_out[rows])


def test_torch_sorts_off_the_cpu_give_the_same_numbers(monkeypatch):
    """The branches a GPU takes (torch's sorts and nonzero instead of numpy's), run here on the CPU."""
    from bpnet_eval.metrics import sorting
    rng = np.random.default_rng(13)
    counts = torch.as_tensor(rng.poisson(rng.gamma(0.3, 2.0, size=(70, 2, 300))).astype(np.float64))
    counts[3, :, 100:120] += 400  # passes BPNet's auPRC depth filter
    logits = torch.as_tensor(np.round(rng.normal(size=counts.shape), 1)) + torch.log(counts + 1)
    rows = torch.arange(70) + 11
    runs = []
    for on_cpu in (True, False):
        monkeypatch.setattr(sorting, "by_numpy", lambda x, on_cpu=on_cpu: on_cpu)
        runs.append([profile_metrics(logits, counts, names=PROFILE_METRICS_ALL, rows=rows, **PROFILE_PRESETS[preset])
                     for preset in sorted(PROFILE_PRESETS)])
    for numpy_run, torch_run in zip(*runs):
        for name, column in numpy_run.items():
            assert torch.equal(torch.nan_to_num(column, nan=-7.0), torch.nan_to_num(torch_run[name], nan=-7.0)), name


def test_sort_helpers_take_tensors_that_require_grad_and_bfloat16():
    x = torch.tensor([[3.0, 1.0, 2.0, 1.0, 0.0]], requires_grad=True)
    assert torch.equal(stable_order(x), torch.tensor([[4, 1, 3, 2, 0]]))
    assert torch.equal(any_order(x.bfloat16()), torch.argsort(x.bfloat16(), dim=-1))
    assert torch.equal(kl_divergence(x.softmax(-1), x.softmax(-1)).detach(), torch.zeros(1))


@pytest.mark.parametrize("values", [
    np.random.default_rng(14).integers(-2**63, 2**63 - 1, size=(20, 2000)),  # distinct keys: the one order
    np.random.default_rng(15).random((20, 2, 700)),  # non-negative floats
    np.round(np.random.default_rng(16).random((20, 700)), 3),  # ties: by position, a sorting order
    np.stack([1.0 + np.arange(64)[::-1] * 2.0**-52, np.repeat([0.5, 0.25], 32),  # adjacent floats descending: argsort
              1.0 + np.arange(64) * 2.0**-52]),
    np.concatenate([np.full((3, 5), -0.0), np.zeros((3, 5)), np.full((3, 5), 1e-310)], axis=1),  # -0.0, subnormals
    np.random.default_rng(17).normal(size=(5, 300)),  # negative: argsort
    # values closer than the dropped bits, with ties among them (smoothed profiles): ordered again by those bits
    1.0 + np.random.default_rng(18).integers(0, 3000, size=(20, 1000)) * 2.0**-50,
    np.random.default_rng(19).integers(-2**12, 2**12, size=(10, 1000)),  # int64 keys, negative ones, in few words
])
def test_packed_sort_orders_ascending(values):
    order = any_order(torch.as_tensor(values)).numpy()
    assert (np.sort(order, axis=-1) == np.arange(values.shape[-1])).all()
    np.testing.assert_array_equal(np.take_along_axis(values, order, axis=-1), np.sort(values, axis=-1))


def test_spearman_is_the_same_number_either_way_round():
    """``spearman(x, y) == spearman(y, x)`` bit for bit (basepairmodels' ranks its smoothed counts second, from their
    nonzero values): smoothed sparse counts with ties at zero, close values, a constant row, non-integer values, +inf."""
    from bpnet_eval.metrics.basepairmodels import gaussian_filter_reflect
    from bpnet_eval.metrics.correlation import pearson, spearman

    rng = np.random.default_rng(32)
    smoothed = gaussian_filter_reflect(rng.poisson(0.05, size=(60, 500)).astype(np.float64))
    smoothed[3] = 0.25
    probs = torch.softmax(torch.as_tensor(rng.normal(size=(60, 500))), dim=-1).numpy()
    with_inf = probs.copy()
    with_inf[4, ::50] = np.inf
    for x, y in ((smoothed, probs), (smoothed * 0.37, probs), (smoothed, with_inf)):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        expected = pearson(average_ranks(x), average_ranks(y))
        assert same_numbers(spearman(x, y), expected) and same_numbers(spearman(y, x), expected)


def same_numbers(a, b):
    """Equal bit for bit, NaN where NaN."""
    return a.dtype == b.dtype and torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a[~torch.isnan(a)],
                                                                                              b[~torch.isnan(b)])


@pytest.fixture(params=["ranks at the nonzero counts", "counts' ranks in sorted order"])
def rank_products(request, monkeypatch):
    """Each way ``_spearman_from_rank_sums`` forms ``sum (rx - m)(ry - c)``, on every row whatever its zeros: ``x``'s
    ranks taken at ``y``'s nonzero values, or ``y``'s centred ranks gathered in ``x``'s sorted order."""
    from bpnet_eval.metrics import correlation
    monkeypatch.setattr(correlation, "SPARSE_RANK_SHARE", 0 if request.param.startswith("ranks") else 10 ** 9)
    return request.param


@pytest.mark.parametrize("zero_variance", [float("nan"), 0.0])
def test_spearman_from_rank_sums_is_pearson_of_the_average_ranks_bit_for_bit(zero_variance, rank_products):
    """The sums over the nonzero counts only (``_spearman_from_rank_sums``) against ``pearson`` of the full rank
    vectors, and scipy: sparse counts, empty and constant rows, no zero at all, tied and constant predictions,
    non-integer counts, rows of 1 and 2 values, joint and per-track shapes."""
    from bpnet_eval.metrics.correlation import pearson, spearman
    rng = np.random.default_rng(22)
    cases = []
    for shape in [(30, 2, 700), (20, 1, 1), (20, 2, 2), (12, 3, 50)]:
        counts = counts_with_ties(shape, seed=shape[-1])
        p = torch.softmax(torch.as_tensor(rng.normal(size=shape)), dim=-1)
        p[3] = 1.0 / shape[-1]  # a uniform prediction: every rank tied
        p[4] = torch.round(p[4] * 50) / 50  # many ties
        cases += [(p, counts), (p.flatten(1), counts.reshape(shape[0], -1)), (p, counts + 1.0),
                  (p, counts * 0.37)]  # no zero; non-integer values
    for x, y in cases:
        y = torch.as_tensor(y, dtype=torch.float64)
        got = spearman(x, y, zero_variance=zero_variance)
        assert same_numbers(got, pearson(average_ranks(x), average_ranks(y), zero_variance=zero_variance))
    x, y = cases[1]
    expected = [spearmanr(a, b)[0] for a, b in zip(x.numpy(), y)]
    np.testing.assert_allclose(spearman(x, torch.as_tensor(y)).numpy(), expected, rtol=1e-12, atol=1e-15)


def test_spearman_tie_corrections_from_the_tied_positions_only_equal_the_averaged_ranks(rank_products):
    """Predictions full of ties (groups of 2 to the whole row, at both ends of a row, equal values ending one row
    and starting the next, which are no tie) against counts zero and nonzero inside the groups: the sums corrected
    at the tied positions (``_add_tie_corrections``) equal ``pearson`` of the averaged ranks bit for bit, and
    scipy."""
    from bpnet_eval.metrics.correlation import pearson, spearman
    rng = np.random.default_rng(41)
    x = np.round(rng.random((64, 300)) * rng.choice([5, 40, 1000, 10 ** 6], size=(64, 1))) + 1.0
    x[3] = 7.0  # one group: the whole row
    x[4, :150] = x[4, 150:] = np.arange(150.0)  # every value twice
    x[5], x[6] = np.linspace(1.0, 2.0, 300), np.linspace(2.0, 3.0, 300)  # row 5's last sorted value starts row 6
    x[7, [0, 299]] = x[7].min(), x[7].max()  # ties at both ends of the sorted row
    y = rng.poisson(rng.gamma(0.4, 2.0, size=x.shape)).astype(np.float64)
    y[8] = 0.0
    y[9] = 2.0
    for a, b in ((x, y), (x[:, :2], y[:, :2]), (x, y + 1.0), (x, (x == np.round(x)) * y)):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        got = spearman(a, b)
        assert same_numbers(got, pearson(average_ranks(a), average_ranks(b)))
    expected = [spearmanr(a, b)[0] for a, b in zip(x, y)]
    np.testing.assert_allclose(spearman(torch.as_tensor(x), torch.as_tensor(y)).numpy(), expected, rtol=1e-12,
                               atol=1e-15, equal_nan=True)


def test_spearman_from_rank_sums_leaves_negative_values_nans_and_float32_to_the_ranks(monkeypatch):
    from bpnet_eval.metrics import correlation
    rng = np.random.default_rng(23)
    x, y = torch.as_tensor(rng.random((8, 300))), torch.as_tensor(rng.poisson(0.5, (8, 300)).astype(np.float64))
    negative, with_nan = y.clone(), x.clone()
    negative[2, 5] = -1.0
    with_nan[1, 7] = float("nan")
    for a, b in ((x, negative), (with_nan, y), (x.float(), y.float())):
        assert same_numbers(correlation.spearman(a, b), correlation.pearson(average_ranks(a), average_ranks(b)))
    monkeypatch.setattr(correlation, "pearson", lambda *args, **kwargs: pytest.fail("took the rank vectors"))
    correlation.spearman(x, y)  # the sums: no pearson of rank vectors


@pytest.mark.parametrize("top_pile", [0, 40, 5000])
def test_ranks_of_counts_on_every_base_from_the_histogram_equal_scipy(top_pile):
    """Counts on (nearly) every base, as a background track's: the nonzero values' ranks from a histogram per row
    (``_binned_ranks``) equal scipy's averaged ranks, and the sort's, bit for bit; a pile too tall for the table and
    non-integer values, dense or sparse (a row of none, an infinite one), are sorted."""
    from bpnet_eval.metrics import correlation
    rng = np.random.default_rng(31)
    values = 1.0 + rng.poisson(0.5, (40, 600))
    values[:, ::7] = 0.0
    values[3, 100:140] += top_pile
    values[5] = 2.0  # one value on every base
    sparse = np.round(rng.exponential(size=(40, 600)) * (rng.random((40, 600)) < rng.random((40, 1)) / 4), 1)
    sparse[7] = 0.0  # no nonzero value
    sparse[8, 9] = np.inf
    sparse[9, :300] = 0.5  # one value tied across half the row
    for y in (values, values * 0.5, sparse):
        where = np.flatnonzero(y)
        row = where // y.shape[-1]
        ranks, zeros = correlation._nonzero_average_ranks(y, where, row)
        expected = np.concatenate([rankdata(r) for r in y]).reshape(y.shape).reshape(-1)[where]
        np.testing.assert_array_equal(ranks, expected)
        np.testing.assert_array_equal(zeros, (y == 0).sum(axis=-1))
        binned = correlation._binned_ranks(y.reshape(-1)[where], row, zeros)
        assert (binned is not None) == (y is values and top_pile < 5000)
        with pytest.MonkeyPatch.context() as patch:  # the sort alone
            patch.setattr(correlation, "_binned_ranks", lambda *args: None)
            assert np.array_equal(correlation._nonzero_average_ranks(y, where, row)[0], ranks)
        p = torch.softmax(torch.as_tensor(rng.normal(size=y.shape)), dim=-1)
        got = correlation.spearman(p, torch.as_tensor(y))
        np.testing.assert_allclose(got.numpy(), [spearmanr(a, b)[0] for a, b in zip(p.numpy(), y)], rtol=1e-12)
    negative = np.array([3.0, -1.0] * 50)  # the table would put a negative value in the row before: sorted
    assert correlation._binned_ranks(negative, np.zeros(100, dtype=np.int64), np.array([0])) is None


@pytest.mark.parametrize("on_cpu", [True, False])
def test_sort_by_takes_an_order_where_it_sorts_and_sorts_the_other_rows(monkeypatch, on_cpu):
    """``sort_by`` against ``np.sort``: the candidate order itself where it sorts a row (ties in its own order),
    and a sorting order elsewhere: a row out of order, a random permutation, a row with a NaN."""
    from bpnet_eval.metrics import sorting
    monkeypatch.setattr(sorting, "by_numpy", lambda x: on_cpu)
    rng = np.random.default_rng(31)
    x = rng.random((40, 300))
    x[5] = np.round(x[5] * 20)  # many ties
    order = np.argsort(x, axis=-1, kind="stable")
    order[6] = rng.permutation(300)  # a random order
    order[7, [10, 11]] = order[7, [11, 10]]  # two values swapped
    x[8, 17] = np.nan
    order[5] = np.argsort(-x[5], kind="stable")[::-1]  # ties in reverse position order: still sorted
    given = torch.as_tensor(order.copy())
    ordered, got = sorting.sort_by(torch.as_tensor(x), given)
    np.testing.assert_array_equal(ordered.numpy(), np.sort(x, axis=-1))  # NaN last
    np.testing.assert_array_equal(np.take_along_axis(x, got.numpy(), -1), ordered.numpy())
    kept = [row for row in range(40) if row not in (6, 7, 8)]
    np.testing.assert_array_equal(got.numpy()[kept], order[kept])
    np.testing.assert_array_equal(given.numpy(), order)  # the candidate is left as given


def test_spearman_with_an_order_given_equals_spearman_without(monkeypatch):
    """An order given to ``spearman`` changes no bit, whether it sorts ``x`` (that of values rising with ``x``), sorts
    it but for a few rows, or not at all; it is not used where the ranks are not from one sort (``sorts_once``)."""
    from bpnet_eval.metrics import correlation
    from bpnet_eval.metrics.correlation import sorts_once, spearman
    rng = np.random.default_rng(32)
    counts = torch.as_tensor(counts_with_ties((30, 600), seed=4))
    logits = torch.as_tensor(rng.normal(size=(30, 600)))
    x = torch.softmax(logits, dim=-1)
    x[4] = torch.round(x[4] * 400) / 400  # ties
    near = torch.argsort(logits, dim=-1)  # sorts x but where rounding ties or swaps values
    wrong = near.clone()
    wrong[:5] = torch.as_tensor(np.stack([rng.permutation(600) for _ in range(5)]))
    unsorted = torch.as_tensor(np.stack([rng.permutation(600) for _ in range(30)]))
    expected = spearman(x, counts)
    for order in (near, wrong, unsorted):
        assert same_numbers(spearman(x, counts, order=order), expected)
    assert sorts_once(x, counts) and not sorts_once(x.float(), counts.float())
    assert not sorts_once(x, counts, ties="argsort")
    monkeypatch.setattr(correlation, "sort_by", lambda *args: pytest.fail("took the order"))
    spearman(x.float(), counts.float(), order=near)
    spearman(x, counts, ties="ordinal", order=near)


def test_per_track_spearman_takes_the_joint_order_and_equals_each_track_alone(monkeypatch):
    """``profile_metrics``' per-track Spearman (checking the joint view's order, taken track by track) against the
    per-track Spearman of each track's probabilities sorted anew, and scipy; the joint view's order is the one its
    own Spearman sorted."""
    from bpnet_eval.metrics import correlation
    rng = np.random.default_rng(33)
    logits = torch.as_tensor(rng.normal(size=(24, 3, 200)))
    logits[2] = torch.round(logits[2] * 4) / 4  # tied logits
    logits[3, 1] = 0.0  # a flat track
    counts = torch.as_tensor(counts_with_ties((24, 3, 200), seed=5))
    given = []
    real_sort_by = correlation.sort_by
    monkeypatch.setattr(correlation, "sort_by", lambda x, order: given.append(order) or real_sort_by(x, order))
    got = profile_metrics(logits, counts, ["profile_spearman"], ["a", "b", "c"])
    assert [tuple(order.shape) for order in given] == [(24, 600), (72, 200)]  # rows of one view
    assert torch.equal(given[1], orders_by_track(given[0], 3).reshape(72, 200))
    p_track = torch.exp(torch.log_softmax(logits, dim=-1))
    for s, name in enumerate("abc"):
        alone = correlation.spearman(p_track[:, s], counts[:, s])
        assert same_numbers(got[f"profile_spearman_{name}"], alone)
        expected = [spearmanr(a, b)[0] for a, b in zip(p_track[:, s].numpy(), counts[:, s].numpy())]
        np.testing.assert_allclose(got[f"profile_spearman_{name}"].numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("density", [0.02, 0.9, 1.0])
def test_both_views_mnll_share_the_log_factorials_and_equal_the_seed_loss(monkeypatch, density):
    """``profile_metrics``' joint and per-track MNLL from one ``log_factorial_terms`` of the counts (mostly zero, dense,
    no zero; non-contiguous counts; a region holding a NaN) equal ``mnll`` of each view alone bit for bit, and the
    seed's ``MNLLLoss``."""
    from bpnet_eval.metrics import profile
    rng = np.random.default_rng(35)
    logits = torch.as_tensor(rng.normal(size=(30, 2, 300)))
    counts = torch.as_tensor(rng.poisson(3.0, size=(30, 2, 300)) * (rng.random((30, 2, 300)) < density) + (
        density == 1.0), dtype=torch.float64)
    counts[4, 1, 7] = torch.nan
    calls = []
    real = profile.log_factorial_terms
    monkeypatch.setattr(profile, "log_factorial_terms", lambda k: calls.append(k) or real(k))
    for observed in (counts, counts.transpose(1, 2).contiguous().transpose(1, 2)):
        calls.clear()
        got = profile_metrics(logits, observed, ["profile_mnll", "profile_mnll_per_base"], ["a", "b"])
        assert len(calls) == 1
        log_p = torch.log_softmax(logits, dim=-1)
        joint = torch.log_softmax(logits.flatten(1), dim=-1)
        assert same_bits(got["profile_mnll"], real_mnll(joint, observed.flatten(1)))
        assert same_bits(got["profile_mnll_per_base"], real_mnll(joint, observed.flatten(1)) / 600)
        for s, name in enumerate("ab"):
            assert same_bits(got[f"profile_mnll_{name}"], real_mnll(log_p, observed)[:, s])
            assert torch.equal(torch.nan_to_num(got[f"profile_mnll_{name}"], nan=-1.0),
                               torch.nan_to_num(MNLLLoss(log_p, observed)[:, s], nan=-1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_factorial_terms_are_torchs_lgamma_bit_for_bit(dtype):
    """``log_factorial_terms``: ``torch.lgamma(k + 1)`` at every position, the same bits, for read counts on every base
    (float64: looked up in the seed's table), mostly-zero counts, counts beyond the table (16384, 10^6), a count that
    is not an integer, and a NaN; float32 as torch computes it."""
    from bpnet_eval.metrics.profile import log_factorial_terms
    from bpnet_eval.seed import log_factorial_table

    rng = np.random.default_rng(41)
    dense = 1.0 + rng.poisson(0.5, size=(20, 2, 300))
    dense[3, 0, :5] = np.arange(len(log_factorial_table()) - 5, len(log_factorial_table()))  # the table's end
    cases = [dense, rng.poisson(0.05, size=(20, 2, 300)), rng.poisson(30.0, size=(20, 2, 300))]
    for changed, value in ((dense.copy(), 16384.0), (dense.copy(), 1e6), (dense.copy(), 2.5), (dense.copy(), np.nan)):
        changed[7, 1, 11] = value
        cases.append(changed)
    for counts in cases:
        observed = torch.as_tensor(counts, dtype=dtype)
        got, expected = log_factorial_terms(observed), torch.lgamma(observed + 1)
        assert got.dtype == dtype and got.shape == observed.shape
        assert torch.equal(torch.nan_to_num(got, nan=-1.0), torch.nan_to_num(expected, nan=-1.0))


def real_mnll(log_p, observed):
    """``mnll`` of one view alone, its terms of the counts its own (laid out as the view's)."""
    return mnll(log_p, observed if observed.dim() == 3 else observed.contiguous())


def test_sums_by_row_equal_bincount_with_empty_rows():
    """``_sums_by_row`` against ``np.bincount(row, weights=...)``: quarters in rows laid end to end, the first, a middle
    and the last row empty; no row at all."""
    from bpnet_eval.metrics.correlation import _sums_by_row
    rng = np.random.default_rng(34)
    counts = rng.integers(0, 50, 12)
    counts[[0, 5, 11]] = 0
    values = rng.integers(-4000, 4000, counts.sum()) / 4.0
    row = np.repeat(np.arange(12), counts)
    np.testing.assert_array_equal(_sums_by_row(values, counts), np.bincount(row, weights=values, minlength=12))
    np.testing.assert_array_equal(_sums_by_row(np.empty(0), np.zeros(3, dtype=np.int64)), np.zeros(3))


def test_one_track_auprc_is_the_joint_one_alone(monkeypatch):
    """With one track (no per-track columns) the auPRC is computed for the joint view only, once per bin size, and
    bit-equals the stable-sort reference."""
    from bpnet_eval.metrics import profile
    from bpnet_eval.metrics.auprc import auprc_region_mask, binned_labels_scores
    counts, logits = auprc_case(1, seed=37)
    dims = []
    real = profile.average_precision
    monkeypatch.setattr(profile, "average_precision",
                        lambda labels, scores: dims.append(labels.dim()) or real(labels, scores))
    got = profile_metrics(logits, counts, AUPRC_NAMES)
    assert dims == [2, 2] and set(got) == set(AUPRC_NAMES)  # joint only; bin 1, bin 10
    mask = auprc_region_mask(counts)
    labels, scores = binned_labels_scores(counts[mask], torch.exp(torch.log_softmax(logits[mask], dim=-1)), 1)
    expected = stable_sort_average_precision(labels.flatten(1), scores.flatten(1))
    assert mask.sum() > 10 and same_numbers(got["profile_auprc_bin1"][mask], expected)
