"""Profile metrics and smoothing against independent float64 numpy/scipy references."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import gammaln
from scipy.stats import entropy, multinomial, pearsonr, rankdata, spearmanr

from bpnet_eval.metrics import (PROFILE_METRICS_ALL, PROFILE_METRICS_DEFAULT, PROFILE_PRESETS, cross_entropy,
                                flatten_tracks, gaussian_kernel, jsd_distance, jsd_divergence, kl_divergence,
                                mnll, mnll_per_base, normalized_jsd, observed_probabilities,
                                permute_positions, profile_metrics, profile_pearson, profile_spearman,
                                shuffled_jsd_distance, smooth_gaussian1d)
from tests.support.metric_cases import PRECISIONS, as_tensors, assert_close, profile_case, softmax

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---- references: plain loops over regions/tracks, scipy/numpy per profile -------------------

def per_profile(fn, *arrays):
    """``fn`` applied to each 1-D profile along the last axis; result shaped like the leading axes."""
    lead = arrays[0].shape[:-1]
    flat = [a.reshape(-1, a.shape[-1]) for a in arrays]
    return np.array([fn(*rows) for rows in zip(*flat)], dtype=np.float64).reshape(lead)


def ref_jsd_distance(k, p, pseudocount=0.0):
    return jensenshannon(k / (pseudocount + np.sum(k)), p)


def ref_norm_jsd(k, p):
    """chrombpnet: min-max normalise between 0 and the distance of the observed to uniform."""
    d = jensenshannon(k / (0.001 + np.sum(k)), p)
    d_max = jensenshannon(k / np.sum(k), np.full(len(k), 1 / len(k)))
    value = (d - d_max) / (0.0 - d_max)
    return value if np.isnan(value) else min(max(value, 0.0), 1.0)


def ref_cross_entropy(k, p):
    if k.sum() == 0:
        return np.nan
    q = k / k.sum()
    return -np.sum(q[q > 0] * np.log(p[q > 0]))


def ref_mnll(k, p):
    return -multinomial(int(k.sum()), p).logpmf(k.astype(int))


def ref_spearman_ordinal(a, b):
    return pearsonr(rankdata(a, method="ordinal"), rankdata(b, method="ordinal"))[0]


def views(logits, counts):
    """Reference (probabilities, counts) of the joint view (B, S*L) and the per-track view (B, S, L)."""
    flat_logits, flat_counts = logits.reshape(len(logits), -1), counts.reshape(len(counts), -1)
    return {"joint": (softmax(flat_logits), flat_counts), "track": (softmax(logits), counts)}


def ref_smooth(x, sigma, width):
    """``y_i = sum_j w_j x_{i + j - (width-1)//2}`` with zeros outside, loop over positions."""
    w = np.exp(-0.5 * ((np.arange(width) - (width - 1) / 2) / sigma) ** 2)
    w /= w.sum()
    out = np.zeros_like(x)
    left = (width - 1) // 2
    for i in range(x.shape[-1]):
        for j in range(width):
            if 0 <= i + j - left < x.shape[-1]:
                out[..., i] += w[j] * x[..., i + j - left]
    return out


# ---- the single metrics -------------------------------------------------------------------

@pytest.mark.parametrize("n_tracks", [1, 2])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
@pytest.mark.parametrize("pseudocount", [0.0, 0.001])
def test_jsd_matches_scipy_jensenshannon(n_tracks, dtype, rtol, atol, pseudocount):
    logits, counts = profile_case(n_tracks)
    for view, (p, k) in views(logits, counts).items():
        expected = per_profile(lambda k_, p_: ref_jsd_distance(k_, p_, pseudocount), k, p)
        p_t, k_t = as_tensors(dtype, p, k)
        q_t = observed_probabilities(k_t, pseudocount)
        assert_close(jsd_distance(p_t, q_t), expected, rtol, atol)
        assert_close(jsd_divergence(p_t, q_t), expected ** 2, rtol, atol)
        assert np.isnan(expected[1]).all()  # zero-count region: undefined, NaN


def test_jsd_from_logits_flattened_equals_scipy_on_joint_softmax():
    logits, counts = profile_case(2)
    logits_t, counts_t = as_tensors(torch.float64, logits, counts)
    p_joint = flatten_tracks(torch.softmax(flatten_tracks(logits_t), dim=-1))
    got = jsd_distance(p_joint, observed_probabilities(flatten_tracks(counts_t)))
    expected = per_profile(ref_jsd_distance, counts.reshape(7, -1), softmax(logits.reshape(7, -1)))
    assert got.shape == (7,)
    assert_close(got, expected, 1e-6, 1e-9)


def test_kl_divergence_skips_zero_terms_like_scipy_entropy():
    logits, counts = profile_case(2)
    p = softmax(logits)
    q = counts / counts.sum(-1, keepdims=True)  # NaN for an empty profile: must propagate
    m = (p + q) / 2
    expected = per_profile(entropy, q, m)
    assert_close(kl_divergence(*as_tensors(torch.float64, q, m)), expected, 1e-6, 1e-9)


@pytest.mark.parametrize("metric,reference", [
    (lambda p, k: normalized_jsd(p, observed_probabilities(k, 0.001)), ref_norm_jsd),
    (lambda p, k: cross_entropy(torch.log(p), observed_probabilities(k)), ref_cross_entropy),
], ids=["norm_jsd_chrombpnet", "cross_entropy"])
@pytest.mark.parametrize("n_tracks", [1, 2])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_normalized_jsd_and_cross_entropy(metric, reference, n_tracks, dtype, rtol, atol):
    logits, counts = profile_case(n_tracks)
    for p, k in views(logits, counts).values():
        assert_close(metric(*as_tensors(dtype, p, k)), per_profile(reference, k, p), rtol, atol)


@pytest.mark.parametrize("n_tracks", [1, 2])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_mnll_matches_scipy_multinomial(n_tracks, dtype, rtol, atol):
    logits, counts = profile_case(n_tracks)
    for p, k in views(logits, counts).values():
        expected = per_profile(ref_mnll, k, p)
        logits_view = np.log(p)
        lp_t, k_t = as_tensors(dtype, logits_view, k)
        assert_close(mnll(lp_t, k_t), expected, rtol, atol * 100)
        assert_close(mnll_per_base(lp_t, k_t), expected / k.shape[-1], rtol, atol)
        assert expected[1].max() == 0  # no counts: likelihood 1


@pytest.mark.parametrize("n_tracks", [1, 2])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_profile_pearson_and_spearman_match_scipy(n_tracks, dtype, rtol, atol):
    logits, counts = profile_case(n_tracks)
    for p, k in views(logits, counts).values():
        p_t, k_t = as_tensors(dtype, p, k)
        pearson_ref = per_profile(lambda a, b: pearsonr(a, b)[0], p, k)
        assert_close(profile_pearson(p_t, k_t), pearson_ref, rtol, atol)
        assert_close(profile_spearman(p_t, k_t), per_profile(lambda a, b: spearmanr(a, b)[0], p, k),
                     rtol, atol)
        assert np.isnan(pearson_ref[1]).all() and np.isnan(pearson_ref[6]).all()
        # bpnet-lite: 0 where a variance is 0; ordinal ranks (ties broken by position)
        assert_close(profile_pearson(p_t, k_t, zero_variance=0.0), np.nan_to_num(pearson_ref), rtol, atol)
    p_t, k_t = as_tensors(dtype, softmax(logits), counts)
    ordinal = per_profile(ref_spearman_ordinal, softmax(logits), counts)
    got = profile_spearman(p_t, k_t, ties="ordinal")
    keep = np.ones(len(counts), bool)
    keep[[1, 5, 6]] = False  # all-tied rows: ordinal ranks = positions, compare only if p untied
    assert_close(got[torch.as_tensor(keep)], ordinal[keep], rtol, atol)


def test_spearman_with_ties_needs_averaged_ranks():
    p = np.array([[0.1, 0.2, 0.2, 0.5, 0.0, 0.0]])
    k = np.array([[1.0, 3.0, 3.0, 7.0, 0.0, 1.0]])
    got = profile_spearman(*as_tensors(torch.float64, p, k))
    assert_close(got, [spearmanr(p[0], k[0])[0]], 1e-12, 1e-12)
    assert not np.isclose(float(got[0]), ref_spearman_ordinal(p[0], k[0]))


def test_shuffled_jsd_is_reproducible_and_a_jsd_to_a_permutation():
    logits, counts = profile_case(2, length=50)
    p_t, k_t = as_tensors(torch.float64, softmax(logits), counts)
    first = shuffled_jsd_distance(p_t, k_t, torch.Generator().manual_seed(3))
    again = shuffled_jsd_distance(p_t, k_t, torch.Generator().manual_seed(3))
    other = shuffled_jsd_distance(p_t, k_t, torch.Generator().manual_seed(4))
    assert torch.equal(torch.nan_to_num(first), torch.nan_to_num(again))
    assert not torch.allclose(torch.nan_to_num(first[[0, 2, 3]]), torch.nan_to_num(other[[0, 2, 3]]))
    permuted = permute_positions(k_t, torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(np.sort(permuted, -1), np.sort(counts, -1))
    assert not np.array_equal(permuted[0], counts[0])
    assert_close(first, per_profile(ref_jsd_distance, permuted, softmax(logits)), 1e-6, 1e-9)


# ---- smoothing ------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma,width,length", [(7.0, 81, 120), (7.0, 81, 30), (1.5, 6, 20), (2.0, 5, 9)])
@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_gaussian_smoothing_matches_same_length_zero_padded_convolution(sigma, width, length, dtype, rtol, atol):
    x = np.random.default_rng(1).poisson(3, size=(3, 2, length)).astype(np.float64)
    assert_close(smooth_gaussian1d(torch.as_tensor(x, dtype=dtype), sigma, width),
                 ref_smooth(x, sigma, width), rtol, atol)
    kernel = gaussian_kernel(sigma, width, dtype=torch.float64)
    assert abs(float(kernel.sum()) - 1) < 1e-12 and torch.allclose(kernel, kernel.flip(0))


def test_smoothed_profile_metrics_compare_smoothed_profiles():
    logits, counts = profile_case(2, length=60)
    p_smooth, k_smooth = ref_smooth(softmax(logits), 7, 81), ref_smooth(counts, 7, 81)
    out = profile_metrics(*as_tensors(torch.float64, logits, counts), names=["profile_jsd_distance",
                          "profile_pearson", "profile_mnll"], track_names=["plus", "minus"],
                          smooth_predictions=True, smooth_observed=True)
    for s, track in enumerate(["plus", "minus"]):
        assert_close(out[f"profile_jsd_distance_{track}"],
                     per_profile(jensenshannon, k_smooth[:, s], p_smooth[:, s]), 1e-6, 1e-9)
        assert_close(out[f"profile_pearson_{track}"],
                     per_profile(lambda a, b: pearsonr(a, b)[0], p_smooth[:, s], k_smooth[:, s]), 1e-6, 1e-9)
        # bpnet-lite: MNLL of the raw counts under ln(smoothed probabilities), not renormalised
        k = counts[:, s]
        expected = -gammaln(k.sum(-1) + 1) + gammaln(k + 1).sum(-1) - np.sum(k * np.log(p_smooth[:, s]), -1)
        assert_close(out[f"profile_mnll_{track}"], expected, 1e-6, 1e-9)


# ---- the batch entry point -------------------------------------------------------------------

REFERENCES = {
    "profile_jsd_distance": lambda k, p: ref_jsd_distance(k, p),
    "profile_jsd_divergence": lambda k, p: ref_jsd_distance(k, p) ** 2,
    "profile_norm_jsd": ref_norm_jsd,
    "profile_cross_entropy": ref_cross_entropy,
    "profile_mnll": ref_mnll,
    "profile_mnll_per_base": lambda k, p: ref_mnll(k, p) / len(k),
    "profile_pearson": lambda k, p: pearsonr(p, k)[0],
    "profile_spearman": lambda k, p: spearmanr(p, k)[0],
}


@pytest.mark.parametrize("dtype,rtol,atol", PRECISIONS)
def test_profile_metrics_joint_and_per_track_columns(dtype, rtol, atol):
    logits, counts = profile_case(2)
    out = profile_metrics(*as_tensors(dtype, logits, counts), names=PROFILE_METRICS_ALL,
                          track_names=["plus", "minus"])
    expected_names = []
    for name in PROFILE_METRICS_ALL:
        expected_names += [name, f"{name}_plus", f"{name}_minus"]
    assert list(out) == expected_names
    assert all(v.shape == (7,) and v.dtype == dtype for v in out.values())
    (p_joint, k_joint), (p_track, k_track) = views(logits, counts).values()
    for name, ref in REFERENCES.items():
        scale = 100 if "mnll" in name and "per_base" not in name else 1
        assert_close(out[name], per_profile(ref, k_joint, p_joint), rtol, atol * scale)
        for s, track in enumerate(["plus", "minus"]):
            assert_close(out[f"{name}_{track}"], per_profile(ref, k_track[:, s], p_track[:, s]), rtol, atol * scale)
    assert torch.isnan(out["profile_jsd_distance_plus"][4]) and not torch.isnan(out["profile_jsd_distance"][4])


def test_profile_metrics_single_track_and_defaults():
    logits, counts = profile_case(1)
    out = profile_metrics(*as_tensors(torch.float64, logits, counts))
    assert list(out) == list(PROFILE_METRICS_DEFAULT)
    assert set(PROFILE_METRICS_DEFAULT) < set(PROFILE_METRICS_ALL)
    with_tracks = profile_metrics(*as_tensors(torch.float64, logits, counts), per_track=True)
    assert_close(with_tracks["profile_pearson_track0"], out["profile_pearson"].numpy(), 1e-12, 1e-12)
    with pytest.raises(ValueError, match="unknown profile metrics"):
        profile_metrics(*as_tensors(torch.float64, logits, counts), names=["profile_jsd"])
    with pytest.raises(ValueError, match="track names"):
        profile_metrics(*as_tensors(torch.float64, logits, counts), track_names=["plus", "minus"])


def test_profile_metrics_presets():
    logits, counts = profile_case(1)
    tensors = as_tensors(torch.float64, logits, counts)
    lite = profile_metrics(*tensors, names=["profile_pearson", "profile_spearman"], **PROFILE_PRESETS["bpnet-lite"])
    assert float(lite["profile_pearson"][1]) == 0.0  # zero counts: 0, not NaN
    # bpnet-lite ranks ties in torch's sort order (checked against bpnet-lite's own output in test_peers.py);
    # without ties every rank order agrees with scipy's ordinal ranks
    untied = counts + np.arange(counts.size).reshape(counts.shape) * 1e-6
    lite = profile_metrics(*as_tensors(torch.float64, logits, untied), names=["profile_spearman"],
                           **PROFILE_PRESETS["bpnet-lite"])
    expected = per_profile(ref_spearman_ordinal, softmax(logits[:, 0]), untied[:, 0])
    untied_rows = [0, 1, 3, 4, 5]  # regions 2 and 6 have tied logits
    assert_close(lite["profile_spearman"][untied_rows], expected[untied_rows], 1e-6, 1e-7)  # float32, as bpnet-lite
    chrom = profile_metrics(*tensors, names=["profile_jsd_distance", "profile_cross_entropy"],
                            **PROFILE_PRESETS["chrombpnet"])
    plain = profile_metrics(*tensors, names=["profile_jsd_distance", "profile_cross_entropy"])
    assert_close(chrom["profile_jsd_distance"], plain["profile_jsd_distance"].numpy(), 1e-12, 1e-12)
    n = counts.sum((-2, -1))
    assert_close(chrom["profile_cross_entropy"], plain["profile_cross_entropy"].numpy() * n / (n + 0.001),
                 1e-9, 1e-12)
    assert torch.isnan(chrom["profile_cross_entropy"][1])  # no counts: undefined even with a pseudocount


def test_profile_metrics_shuffled_columns_are_reproducible():
    logits, counts = profile_case(2)
    tensors = as_tensors(torch.float32, logits, counts)
    names = ["profile_jsd_shuffled", "profile_jsd_observed_shuffled"]
    a = profile_metrics(*tensors, names=names, generator=torch.Generator().manual_seed(7))
    b = profile_metrics(*tensors, names=names, seed=7)
    for name in a:
        assert torch.equal(torch.nan_to_num(a[name]), torch.nan_to_num(b[name]))


@pytest.mark.slow  # keyed permutations of every row several times, ~2 s
def test_keyed_permutations_depend_only_on_seed_and_row():
    """With global row numbers, each region's shuffle is the same in any batch composition."""
    rng = np.random.default_rng(11)
    counts = torch.tensor(rng.poisson(2.0, size=(9, 2, 40)).astype(np.float64))
    rows = torch.arange(100, 109)
    whole = permute_positions(counts, rows=rows, seed=5)
    pieces = torch.cat([permute_positions(counts[a:b], rows=rows[a:b], seed=5) for a, b in ((0, 1), (1, 6), (6, 9))])
    torch.testing.assert_close(whole, pieces, rtol=0, atol=0)
    # each row is a permutation of its own values, and another seed permutes differently
    np.testing.assert_array_equal(np.sort(whole.numpy(), axis=-1), np.sort(counts.numpy(), axis=-1))
    assert not torch.equal(whole, permute_positions(counts, rows=rows, seed=6))
    assert not torch.equal(whole, permute_positions(counts, rows=rows + 1, seed=5))
    # the joint view (S*L flattened) permutes with the same per-element keys
    names = ["profile_jsd_shuffled", "profile_jsd_observed_shuffled"]
    logits = torch.tensor(rng.normal(size=(9, 2, 40)))
    a = profile_metrics(logits, counts, names=names, rows=rows, seed=5)
    b = {k: torch.cat([profile_metrics(logits[s], counts[s], names=names, rows=rows[s], seed=5)[k]
                       for s in (slice(0, 4), slice(4, 9))]) for k in a}
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("preset", sorted(PROFILE_PRESETS))
@pytest.mark.parametrize("options", [{}, {"smooth_predictions": True, "smooth_observed": True}, {"one_track": True}])
def test_profile_metrics_leave_no_reference_cycle(preset, options):
    """Every metric, each preset, smoothed and with one track: nothing the call made is left in a reference cycle,
    which only the cyclic garbage collector frees (it runs by object counts, not bytes: a cycle holding a batch's
    tensors let a --metrics all run grow to 3.3 GB)."""
    import gc

    rng = np.random.default_rng(3)
    tracks = 1 if options.get("one_track") else 2
    logits = torch.as_tensor(rng.normal(size=(48, tracks, 300)))
    counts = torch.as_tensor(rng.poisson(0.8, size=(48, tracks, 300)).astype(np.float64))
    counts[:4] *= 100  # regions the auPRC takes
    settings = {k: v for k, v in options.items() if k != "one_track"}
    call = lambda: profile_metrics(logits, counts, list(PROFILE_METRICS_ALL), [f"t{s}" for s in range(tracks)],
                                   rows=torch.arange(48), **PROFILE_PRESETS[preset], **settings)
    call()  # imports and caches first
    gc.collect()
    gc.disable()
    try:
        call()
        assert gc.collect() == 0
    finally:
        gc.enable()
