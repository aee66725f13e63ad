"""``--preset bpreveal`` against what BPReveal 5.2.2 itself wrote (``data/fixtures/peers/bpreveal``, NOTE.md).

The expected numbers are BPReveal's own: its ``H5Writer`` stored the predictions, ``predictToBigwig`` wrote the
predicted bigWigs, ``metrics --json-output`` (with and without ``--skip-zeroes``) wrote ``metrics.*.json`` and its
``MetricsCalculator.runRegions`` the per-region values of ``per_region.json``. Region 0 has no reads, regions 1-2
an empty minus strand, region 7 one read per strand; logits are rounded to 0.25 with the first 40 positions tied,
and predicted log counts 2-5 are tied.

Tolerances, and why:

- scored from BPReveal's own predicted bigWigs (the values its ``metrics`` read): the same float32 inputs, so
  every number agrees to float64 rounding (``1e-9`` relative; measured: about 1e-15);
- scored from ``predictions.h5`` (what a user has before ``predictToBigwig``): the bigWigs hold
  ``softmax(logits) * exp(logcounts)`` rounded to float32, we compute from the logits, so values agree to float32
  rounding of the profile: ``1e-6`` relative (the MNLL sums ``k ln p`` over hundreds of reads).
"""

import json
import math
import shutil

import numpy as np
import pytest

from tests.support.cli import REPO, run_cli

PEER = REPO / "data" / "fixtures" / "peers" / "bpreveal"
TRACKS = ("plus", "minus")
PROFILE_KEYS = ("mnll", "jsd", "pearsonr", "spearmanr")
DTYPES = ("float64", "float32")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def bigwig_job():
    return (",".join(str(PEER / f"predicted.{t}.bw") for t in TRACKS), [str(PEER / f"observed.{t}.bw") for t in TRACKS],
            str(PEER / "regions.bed"))


@pytest.fixture(scope="module")
def from_bigwigs():
    from bpnet_eval.pipeline import score

    return {dtype: score(*bigwig_job(), preset="bpreveal", dtype=dtype) for dtype in DTYPES}


@pytest.fixture(scope="module")
def from_h5():
    from bpnet_eval.pipeline import score

    truth = [str(PEER / f"observed.{t}.bw") for t in TRACKS]
    return {dtype: score(str(PEER / "predictions.h5"), truth, str(PEER / "regions.bed"), preset="bpreveal",
                         dtype=dtype) for dtype in DTYPES}


def peer_json(name):
    return json.loads((PEER / name).read_text())


def assert_close(got, peer, rel, what):
    got, peer = np.asarray(got, dtype=np.float64), np.asarray(peer, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(peer), err_msg=f"{what}: NaN where BPReveal's is")
    np.testing.assert_allclose(got[~np.isnan(peer)], peer[~np.isnan(peer)], rtol=rel, atol=1e-12, err_msg=what)


def assert_metrics_json(text, peer, rel, what):
    got = json.loads(text)
    assert list(got) == list(peer), f"{what}: keys and their order as BPReveal writes them"
    for key in PROFILE_KEYS:
        assert got[key]["quantile-cutoffs"] == peer[key]["quantile-cutoffs"]
        assert_close(got[key]["quantiles"], peer[key]["quantiles"], rel, f"{what} {key}")
    for key in ("counts-pearson", "counts-spearman"):
        assert_close([got[key]], [peer[key]], rel, f"{what} {key}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ("bigwigs", "h5"))
def test_per_region_values(from_bigwigs, from_h5, route, dtype):
    """``MetricsCalculator.runRegions``' values per region and track, NaN where it poisons a region."""
    from bpnet_eval.presets import bpreveal_region_values

    result = (from_bigwigs if route == "bigwigs" else from_h5)[dtype]
    rel = 1e-9 if route == "bigwigs" and dtype == "float64" else 1e-6
    peer = peer_json("per_region.json")
    for s, track in enumerate(TRACKS):
        ours = bpreveal_region_values(result.columns, list(TRACKS), s)
        for key, values in peer[track].items():
            assert_close(ours[key], values, rel, f"{route} {dtype} {track} {key}")
    assert np.isnan(peer["minus"]["mnll"][:3]).all() and np.isnan(peer["plus"]["mnll"][0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ("bigwigs", "h5"))
def test_metrics_json(from_bigwigs, from_h5, route, dtype):
    """``bpreveal_metrics.<track>[.skip-zeroes].json`` equal ``metrics --json-output [--skip-zeroes]``'s files."""
    result = (from_bigwigs if route == "bigwigs" else from_h5)[dtype]
    rel = 1e-9 if route == "bigwigs" and dtype == "float64" else 1e-6
    for track in TRACKS:
        for suffix in ("", ".skip-zeroes"):
            text = result.files[f"bpreveal_metrics.{track}{suffix}.json"]
            assert_metrics_json(text, peer_json(f"metrics.{track}{suffix}.json"), rel, f"{route} {track}{suffix}")
            assert not text.endswith("\n")  # json.dumps(..., indent=4), written as is
    # BPReveal's default: one region without reads makes every number NaN
    assert all(math.isnan(q) for q in peer_json("metrics.plus.json")["mnll"]["quantiles"])


def test_paths_as_bpreveal_records_them(from_bigwigs):
    got = json.loads(from_bigwigs["float64"].files["bpreveal_metrics.minus.json"])
    assert (got["reference"], got["predicted"], got["regions"]) == (
        str(PEER / "observed.minus.bw"), str(PEER / "predicted.minus.bw"), str(PEER / "regions.bed"))


def test_fewer_than_five_regions_give_zero_quantiles():
    """BPReveal replaces a vector of fewer than 5 values by five zeros before its quantiles."""
    from bpnet_eval.presets import bpreveal_metrics

    values = {key: np.array([1.0, 2.0, np.nan]) for key in (*PROFILE_KEYS, "reference_counts", "predicted_counts")}
    got = json.loads(bpreveal_metrics(values, True, {}))
    assert got["mnll"]["quantiles"] == [0.0] * 5
    assert math.isnan(got["counts-pearson"])  # 2 regions with both totals: BPReveal writes NaN


def test_count_target_is_ln_k(from_bigwigs):
    """The preset scores counts against BPReveal's training target ``ln K`` and says so in its settings."""
    result = from_bigwigs["float64"]
    assert result.summary["settings"]["metrics"]["count_target"] == "log"
    columns = result.columns
    observed, predicted = columns["observed_counts"], columns["predicted_logcounts"]
    with np.errstate(divide="ignore"):
        expected = np.where(observed > 0, (np.log(observed) - predicted) ** 2, np.nan)
    np.testing.assert_allclose(columns["count_log_mse"], expected, rtol=1e-12, equal_nan=True)
    assert "count_log1p_mse" not in columns
    assert result.summary["metrics"]["count_log_mse"]["n_undefined"] == int((observed == 0).sum())


@pytest.mark.slow
def test_cli_writes_bpreveal_files(tmp_path):
    """``score predicted.plus.bw,predicted.minus.bw observed.plus.bw observed.minus.bw --regions regions.bed
    --preset bpreveal`` run where BPReveal ran (relative paths): the files as ``metrics`` wrote them."""
    for name in ("predicted.plus.bw", "predicted.minus.bw", "observed.plus.bw", "observed.minus.bw", "regions.bed"):
        shutil.copy(PEER / name, tmp_path / name)
    result = run_cli("score", "predicted.plus.bw,predicted.minus.bw", "observed.plus.bw", "observed.minus.bw",
                     "--regions", "regions.bed", "--preset", "bpreveal", "--out", "report", "--no-plots", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for track in TRACKS:
        for suffix in ("", ".skip-zeroes"):
            text = (tmp_path / "report" / f"bpreveal_metrics.{track}{suffix}.json").read_text()
            peer = peer_json(f"metrics.{track}{suffix}.json")
            assert_metrics_json(text, peer, 1e-9, f"cli {track}{suffix}")
            got = json.loads(text)
            assert (got["reference"], got["predicted"]) == (peer["reference"], peer["predicted"])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["settings"]["metrics"]["count_target"] == "log"


def test_negated_predicted_bigwig_as_bpreveal_reads_it_with_apply_abs():
    """``predictToBigwig --negate`` writes the minus strand negated; ``metrics --apply-abs --skip-zeroes`` reads it
    as magnitudes: scoring that file gives BPReveal's numbers with no flag (negated files are read as magnitudes)."""
    from bpnet_eval.pipeline import score

    result = score(",".join(str(PEER / name) for name in ("predicted.plus.bw", "predicted.minus.negated.bw")),
                   [str(PEER / f"observed.{t}.bw") for t in TRACKS], str(PEER / "regions.bed"), preset="bpreveal")
    text = result.files["bpreveal_metrics.minus.skip-zeroes.json"]
    assert_metrics_json(text, peer_json("metrics.minus.negated.skip-zeroes.json"), 1e-9, "negated minus")
    assert json.loads(text)["predicted"] == str(PEER / "predicted.minus.negated.bw")
