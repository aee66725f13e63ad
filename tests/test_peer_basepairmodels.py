"""``--preset basepairmodels`` against what basepairmodels' own ``predict`` wrote (``data/fixtures/peers/basepairmodels``,
NOTE.md: its source at 2ba96f4, version 0.3.1, run with TensorFlow, the model and mseqgen's generator stood in for).

Tolerances, and why:

- MNLL, cross-entropy, JSD, Pearson (normalised as basepairmodels does) and the count correlations: ``1e-9``
  (measured: 8e-15 relative): the smoothing, multinomial and JSD follow scipy's own order of operations;
- MSE of counts-scale profiles: ``1e-6`` relative (measured 9e-7): basepairmodels forms ``softmax * (e^c - 1)`` in
  float32, we from the stored float64 copy through logits;
- profile Spearman: ``2e-3`` absolute (measured 5.1e-4): ``_fix_sum_to_one`` moves each profile's rounding excess
  onto its first largest or smallest value, which can split a tie there; whether it does depends on the last bits
  of the sum, so the peer's Spearman is partly arbitrary, and the run's report says so in one line.
"""

import io
import json

import numpy as np
import pytest

from tests.support.cli import REPO, run_cli

PEER = REPO / "data" / "fixtures" / "peers" / "basepairmodels"
H5 = PEER / "model_predictions.h5"
DTYPES = ("float64", "float32")
EXACT = ("mnll", "cross_entropy", "jsd", "pearson")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def results():
    from bpnet_eval.pipeline import score

    return {dtype: score(str(H5), str(H5), preset="basepairmodels", dtype=dtype) for dtype in DTYPES}


def peer(name):
    return np.load(PEER / f"{name}.npz")[name]


def ours(result, name):
    return np.load(io.BytesIO(result.files[f"{name}.npz"]))[name]


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_region_metric_files(results, dtype):
    result = results[dtype]
    for name in EXACT:
        np.testing.assert_allclose(ours(result, name), peer(name), rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ours(result, "mse"), peer("mse"), rtol=1e-6, atol=0, err_msg="mse")
    np.testing.assert_allclose(ours(result, "spearman"), peer("spearman"), rtol=0, atol=2e-3, err_msg="spearman")
    assert ours(result, "mnll").shape == (33, 2) and ours(result, "mnll").dtype == np.float64
    # what basepairmodels leaves 0: no reads (locus 3), an empty minus strand (5), e^c - 1 = 0 (locus 7, minus)
    for row, track in ((3, 0), (3, 1), (5, 1), (7, 1)):
        assert peer("jsd")[row, track] == 0 and ours(result, "jsd")[row, track] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_count_files(results, dtype):
    result = results[dtype]
    for name in ("counts_pearson", "counts_spearman"):
        np.testing.assert_allclose(ours(result, name), peer(name), rtol=1e-9, err_msg=name)
    for s in range(2):
        for kind in ("true", "pred"):
            got = np.load(io.BytesIO(result.files[f"{kind}_logcounts_{s}.npy"]))
            np.testing.assert_allclose(got, np.load(PEER / f"{kind}_logcounts_{s}.npy"), rtol=1e-12, atol=0)


def test_report_says_the_spearman_is_partly_arbitrary(results):
    notes = [w for w in results["float64"].summary["warnings"] if "_fix_sum_to_one" in w]
    assert len(notes) == 1 and "Spearman" in notes[0]


@pytest.mark.slow
def test_cli_writes_basepairmodels_files(tmp_path):
    out = tmp_path / "report"
    result = run_cli("score", H5, H5, "--preset", "basepairmodels", "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    assert sum("_fix_sum_to_one" in line for line in result.stderr.splitlines()) == 1
    for name in EXACT:
        np.testing.assert_allclose(np.load(out / f"{name}.npz")[name], peer(name), rtol=1e-9, atol=1e-12)
    assert json.loads((out / "summary.json").read_text())["settings"]["metrics"]["preset"] == "basepairmodels"


def test_min_max_normalisation_over_a_subnormal_range_clips_without_a_warning():
    """``(v - min) / (max - min)`` over a subnormal range overflows to ±inf: clipped to [0, 1] (as numpy's clip in
    basepairmodels gives it), with no RuntimeWarning printed into a run's output."""
    import warnings

    from bpnet_eval.metrics.basepairmodels import min_max_normalize

    value, low, high = np.array([1.0, -1.0, 2.0 ** -1031, np.nan]), np.zeros(4), np.full(4, 2.0 ** -1030)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalised = min_max_normalize(value, low, high)
    np.testing.assert_array_equal(normalised[:3], [1.0, 0.0, 0.5])
    assert np.isnan(normalised[3])


@pytest.mark.parametrize("shape", [(40, 1000), (5, 30), (3, 1), (4, 81), (2, 3, 100), (300,), (0, 10), (3, 0)])
def test_gaussian_smoothing_is_scipys_bit_for_bit(shape, monkeypatch):
    """The smoothing of the observed counts, a cache-sized block of rows at a time, equals scipy's
    ``gaussian_filter1d`` (sigma 7, 81 taps, ``reflect``) bit for bit: sparse counts, rows shorter than the kernel's
    radius (reflected again), one base, more rows than one block."""
    from scipy.ndimage import gaussian_filter1d

    from bpnet_eval.metrics import basepairmodels

    monkeypatch.setattr(basepairmodels, "FILTER_BLOCK_VALUES", 3 * 1000)  # 40 rows of 1,000: 14 blocks
    rng = np.random.default_rng(sum(shape) + len(shape))
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=shape)).astype(np.float64)
    expected = (gaussian_filter1d(counts, 7.0, truncate=(40 - 0.5) / 7.0, mode="reflect") if counts.size
                else counts)
    got = basepairmodels.gaussian_filter_reflect(counts)
    assert got.shape == counts.shape and np.array_equal(got, expected)


def test_metrics_of_a_batch_in_blocks_equal_each_region_alone(monkeypatch):
    """Regions are scored a block of rows at a time: a batch of several blocks with hostile rows (no reads, a zero
    predicted total, a NaN probability, ties, non-integer counts) gives each region the numbers it gets alone."""
    from bpnet_eval.metrics import basepairmodels

    monkeypatch.setattr(basepairmodels, "METRIC_BLOCK_VALUES", 7 * 200)
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(40, 200)) * 3
    logits[::7] = np.round(logits[::7])
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    probs[3, 0] = np.nan
    observed = rng.poisson(0.3, size=(40, 200)).astype(np.float64)
    observed[5], observed[11] = 0.0, 0.37 * rng.poisson(1.0, 200)
    logcounts = rng.normal(3.0, 1.0, 40)
    logcounts[7] = 0.0
    with np.errstate(all="ignore"):
        batch = basepairmodels.basepairmodels_metrics(probs, logcounts, observed)
        for i in range(40):
            alone = basepairmodels.basepairmodels_metrics(probs[i:i + 1], logcounts[i:i + 1], observed[i:i + 1])
            for name, values in alone.items():
                assert np.array_equal(batch[name][i:i + 1], values, equal_nan=True), (name, i)
    assert batch["jsd"][5] == 0 and batch["jsd"][7] == 0 and np.isnan(batch["mnll"]).sum() == 0


@pytest.mark.parametrize("length", [1, 3, 8, 81, 1000, 1003])
def test_the_jsd_to_uniform_from_nonzero_positions_is_every_terms_bit_for_bit(length):
    """basepairmodels' JSD bound, ``jensenshannon(k / sum k, uniform)``, from the nonzero counts alone equals the
    formula over every position bit for bit: sparse and dense counts, normalised (non-integer) tracks, values from
    1e-300 to 1e300, a value whose share underflows to 0; rows with a NaN, a negative value or no reads fall back to
    every term (NaN or inf where the formula gives them)."""
    from bpnet_eval.metrics.basepairmodels import jensenshannon_rows, jensenshannon_rows_to_uniform

    rng = np.random.default_rng(length)
    cases = [rng.poisson(rng.gamma(0.2, 1.0), size=(30, length)).astype(np.float64),
             rng.poisson(5.0, size=(30, length)).astype(np.float64),
             rng.poisson(0.05, size=(30, length)) * 0.037 + (np.arange(length) == 0),
             rng.random((30, length)) * (rng.random((30, length)) < 0.1) * 1e-300 + (np.arange(length) == 0) * 1e-300,
             rng.random((30, length)) * 1e300]
    tiny_share = rng.poisson(0.3, size=(5, length)).astype(np.float64)
    tiny_share[:, 0], tiny_share[0, -1] = 1e300, 5e-324
    hostile = rng.poisson(0.3, size=(4, length)).astype(np.float64) + 1
    hostile[1, 0], hostile[2, 0], hostile[3] = np.nan, -1.0, 0.0
    for counts in cases + [tiny_share, hostile]:
        uniform = np.full_like(counts, 1.0 / length)
        with np.errstate(all="ignore"):
            expected = jensenshannon_rows(counts, uniform)
            got = jensenshannon_rows_to_uniform(counts, uniform)
        assert got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True)
    assert np.isfinite(got[0]) and np.isnan(got[[1, 3]]).all()
    assert length == 1 or not np.isfinite(got[2])  # (a negative value: inf or NaN, as every term gives)
