"""``--preset bpnet-lite`` against what bpnet-lite 1.1.0 itself computed (``../shared/peers/bpnet-lite``).

The expected numbers are the peer's own output (``expected.json``, ``performance.float32.tsv``: see
``../shared/peers/README.md``), never a restatement of its definitions. The case is hostile on purpose:
six regions with an empty minus strand (bpnet-lite: JSD NaN, so the ``performance.tsv`` mean is NaN;
Pearson 0), logits rounded to 0.25 with the first 200 positions of every strand tied, tied predicted
log counts, and many zero counts: bpnet-lite's Spearman ranks with ``argsort().argsort()``, so its value
(even its sign) depends on the order torch's sort leaves ties in, which must be reproduced exactly.

Tolerances, and why:

- Spearman of the profiles: ``SPEARMAN_ULPS`` float32 ulps. The ranks are integers and the tie order is
  torch's, reproduced exactly; the correlation of those ranks is then summed in float32, and torch's
  vectorised float32 sums round differently on an AVX-512 CPU than on the one that wrote the file
  (bpnet-lite's own expression, run by torch 2.13.0 here on AVX-512, is 2 ulps off the file in 24 of 128
  values, and bit-identical to ours). A wrong tie order (ties by position) is off by over 10^7 ulps,
  which ``test_spearman_tolerance_still_pins_the_tie_order`` checks. Spearman of the counts: exact.
- float64 inputs: bpnet-lite computes in float64 and stores its profile measures in a float32 tensor;
  ours are computed with the same operations and rounded to float32 alike: equal to within one
  float32 ulp (``np.spacing`` at the peer's float32 value; here they are in fact bit-identical). Its
  count measures stay float64: equal to ``REL64``.
- float32 inputs: bpnet-lite computes everything in float32 on the machine that made the file; torch's
  vectorised float32 ``exp``/``log``/``lgamma``/sums round differently from one CPU to another (the
  float64 results, which run the same operations, agree bit for bit), so the per-region profile
  measures agree to a few float32 ulps: ``ULPS32`` (measured: 5 for JSD and Pearson, 8 for the MNLL,
  whose float32 terms cancel). The summary's count measures are computed in float64 from the same
  inputs, so they equal bpnet-lite's float32 values to float32 rounding (``REL32``).
"""

import json
import math

import numpy as np
import pytest

from tests.support.cli import SHARED, run_cli

PEER = SHARED / "peers" / "bpnet-lite"
CASE = PEER / "case.h5"

pytestmark = [pytest.mark.skipif(not (PEER / "expected.json").is_file(),
                                 reason=f"bpnet-lite's own numbers are not here: {PEER} is absent (../shared)"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

DTYPES = ("float32", "float64")
SPEARMAN_ULPS = 4    # profile Spearman: float32 sums of exact ranks (see the module docstring)
ULPS32 = 16          # float32 inputs: float32 ulps of the peer's value (see the module docstring)
REL32 = 2 ** -22     # float32 inputs, count measures: two float32 roundings
REL64 = 1e-12        # float64 results computed by a different but equivalent float64 sequence
TRACKS = ("plus", "minus")
PROFILE_COLUMNS = {"profile_mnll": "profile_mnll", "profile_jsd": "profile_jsd_divergence",
                   "profile_pearson": "profile_pearson", "profile_spearman": "profile_spearman"}
MEASURES = ("profile_mnll", "profile_jsd", "profile_pearson", "profile_spearman", "count_pearson",
            "count_spearman", "count_mse")


@pytest.fixture(scope="module")
def expected():
    return json.loads((PEER / "expected.json").read_text())


@pytest.fixture(scope="module")
def results():
    from bpnet_eval.pipeline import score

    return {dtype: score(str(CASE), str(CASE), preset="bpnet-lite", dtype=dtype) for dtype in DTYPES}


def per_strand(columns, name):
    return np.stack([columns[f"{name}_{track}"] for track in TRACKS], axis=1)


def assert_ulps(got, peer, ulps, what):
    """``got`` equals the peer's float32 values to ``ulps`` float32 ulps, NaN exactly where the peer's is."""
    got, peer = np.asarray(got, dtype=np.float64), np.asarray(peer, dtype=np.float64)
    assert got.shape == peer.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(peer), err_msg=f"{what}: NaN where bpnet-lite's is")
    defined = ~np.isnan(peer)
    spacing = np.spacing(np.abs(peer[defined]).astype(np.float32)).astype(np.float64)
    off = np.abs(got[defined] - peer[defined]) / spacing
    assert off.max() <= ulps, f"{what}: {off.max():.1f} float32 ulps from bpnet-lite's (at most {ulps})"


@pytest.mark.parametrize("dtype", DTYPES)
def test_profile_measures_per_region_and_strand(results, expected, dtype):
    columns, peer = results[dtype].columns, expected[dtype]["per_region"]
    for measure, column in PROFILE_COLUMNS.items():
        got = per_strand(columns, column)
        assert np.array_equal(got, got.astype(np.float32), equal_nan=True), f"{measure}: float32 values, as bpnet-lite's"
        if measure == "profile_spearman":
            assert_ulps(got, peer[measure], SPEARMAN_ULPS, f"{dtype} {measure}")
        else:
            assert_ulps(got, peer[measure], 1 if dtype == "float64" else ULPS32, f"{dtype} {measure}")


def test_spearman_tolerance_still_pins_the_tie_order(expected):
    """Ranking ties by position instead of torch's order moves bpnet-lite's profile Spearman far beyond
    ``SPEARMAN_ULPS``: the tolerance admits float32 summation order, not another tie order."""
    import h5py
    import torch

    from bpnet_eval.metrics.correlation import spearman

    with h5py.File(CASE, "r") as h5:
        logits, observed = h5["predictions/logits"][:], h5["observed/counts"][:]
    by_position = spearman(torch.from_numpy(logits), torch.from_numpy(observed.astype(np.float32)),
                           ties="ordinal", zero_variance=0.0).numpy()
    with pytest.raises(AssertionError, match="float32 ulps"):
        assert_ulps(by_position, expected["float32"]["per_region"]["profile_spearman"], SPEARMAN_ULPS,
                    "ties by position")


def test_empty_strand_is_nan_jsd_and_zero_pearson(results, expected):
    """Regions 6-11 have no minus-strand reads: bpnet-lite gives JSD NaN and Pearson 0 there."""
    columns = results["float64"].columns
    peer = np.asarray(expected["float64"]["per_region"]["profile_jsd"], dtype=np.float64)
    assert np.isnan(peer[6:12, 1]).all() and not np.isnan(peer[:, 0]).any()
    assert np.isnan(columns["profile_jsd_divergence_minus"][6:12]).all()
    assert (columns["profile_pearson_minus"][6:12] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_count_measures(results, expected, dtype):
    counts, peer = results[dtype].summary["counts"], expected[dtype]["per_region"]
    assert counts["spearman"] == peer["count_spearman"][0]
    rel = REL32 if dtype == "float32" else REL64
    for name in ("pearson", "mse"):
        assert counts[name] == pytest.approx(peer[f"count_{name}"][0], rel=rel), name


def performance_values(text):
    header, row = text.split("\n")
    return dict(zip(header.split("\t"), map(float, row.split("\t"))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_performance_tsv(results, expected, dtype):
    """The means as ``bpnet evaluate`` writes them (NaN propagating): equal to bpnet-lite's, digit for digit."""
    text = results[dtype].files["performance.tsv"]
    got, peer = performance_values(text), expected[dtype]["performance_tsv"]
    assert tuple(got) == MEASURES == tuple(peer)
    for name in MEASURES:
        if peer[name] is None or (isinstance(peer[name], float) and math.isnan(peer[name])):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == peer[name], name
    assert math.isnan(got["profile_jsd"])  # an empty strand makes bpnet-lite's mean NaN
    if dtype == "float32":
        assert text.encode() == (PEER / "performance.float32.tsv").read_bytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixture_loss_batch_means(results, expected, dtype):
    """``_mixture_loss`` (profile, count, total: batch means) equals the means of our seed columns."""
    columns = results[dtype].columns
    ours = [columns[name].mean() for name in ("profile_mnll", "count_log1p_mse", "mixture_loss")]
    rel = REL32 if dtype == "float32" else REL64
    assert ours == pytest.approx(expected[dtype]["_mixture_loss"], rel=rel)


def test_seed_losses_per_region(results, expected):
    columns, peer = results["float64"].columns, expected["float64"]["per_region_seed"]
    for ours, theirs in (("profile_mnll", "profile_mnll_joint"), ("count_log1p_mse", "count_log1p_se"),
                         ("mixture_loss", "mixture_w1")):
        np.testing.assert_allclose(columns[ours], peer[theirs], rtol=REL64, atol=0, err_msg=ours)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_cli_writes_bpnet_lites_performance_tsv(tmp_path, expected, dtype):
    """``score case.h5 case.h5 --preset bpnet-lite`` (TRUTH: the same file's ``observed/counts``)."""
    out = tmp_path / dtype
    result = run_cli("score", CASE, CASE, "--preset", "bpnet-lite", "--dtype", dtype, "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    text = (out / "performance.tsv").read_text()
    if dtype == "float32":
        assert text.encode() == (PEER / "performance.float32.tsv").read_bytes()
    got, peer = performance_values(text), expected[dtype]["performance_tsv"]
    for name in MEASURES:
        assert (math.isnan(got[name]) and math.isnan(float(peer[name]))) or got[name] == peer[name], name
