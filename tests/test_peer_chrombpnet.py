"""``--preset chrombpnet`` against what chrombpnet 1.0.1 itself wrote (``data/fixtures/peers/chrombpnet``, NOTE.md).

``chrombpnet_predictions.h5`` and ``chrombpnet_metrics.json`` were written by ``chrombpnet.training.predict.main``;
``per_region.json`` holds the per-region values its ``metrics.profile_metrics`` returned. The last nonpeak
window has no reads (chrombpnet: JSD NaN, left out of its ``np.nanmedian``).

Tolerance ``1e-6`` absolute (the brief's): chrombpnet normalises its float32 probabilities in float32 inside
scipy's ``jensenshannon``; we read the float64 copy it stored, so JSDs differ by float32 rounding (measured:
about 7e-9); the count metrics agree to about 1e-15.
"""

import json
import shutil

import numpy as np
import pytest

from tests.support.cli import REPO, run_cli

PEER = REPO / "data" / "fixtures" / "peers" / "chrombpnet"
DTYPES = ("float64", "float32")
TOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def results():
    from bpnet_eval.pipeline import score

    return {dtype: score(str(PEER / "chrombpnet_predictions.h5"), str(PEER / "observed.bw"), preset="chrombpnet",
                         dtype=dtype) for dtype in DTYPES}


def peer_metrics():
    return json.loads((PEER / "chrombpnet_metrics.json").read_text())


def assert_metrics_file(text, peer):
    got = json.loads(text)
    assert [(k, g, m) for k in got for g in got[k] for m in got[k][g]] == \
        [(k, g, m) for k in peer for g in peer[k] for m in peer[k][g]], "groups and keys in chrombpnet's order"
    for kind in peer:
        for group in peer[kind]:
            for name, value in peer[kind][group].items():
                assert abs(got[kind][group][name] - value) <= TOL, (kind, group, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_region_jsd(results, dtype):
    columns, peer = results[dtype].columns, json.loads((PEER / "per_region.json").read_text())
    for ours, theirs in (("profile_jsd_distance", "jsd"), ("profile_norm_jsd", "norm_jsd")):
        expected = np.asarray(peer[theirs], dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(columns[ours]), np.isnan(expected), err_msg=ours)
        np.testing.assert_allclose(columns[ours], expected, atol=TOL, rtol=0, equal_nan=True, err_msg=ours)
    assert np.isnan(peer["jsd"][-1])  # the nonpeak window without reads


@pytest.mark.parametrize("dtype", DTYPES)
def test_metrics_json(results, dtype):
    text = results[dtype].files["chrombpnet_metrics.json"]
    assert_metrics_file(text, peer_metrics())
    assert text.startswith('{\n    "counts_metrics": {\n        "peaks_and_nonpeaks"') and not text.endswith("\n")


def test_one_group_only(tmp_path):
    """chrombpnet given only peaks (``--nonpeaks None``) writes only the ``peaks`` group."""
    import h5py

    from bpnet_eval.pipeline import score

    only_peaks = tmp_path / "peaks.h5"
    shutil.copy(PEER / "chrombpnet_predictions.h5", only_peaks)
    with h5py.File(only_peaks, "r+") as handle:
        peak = handle["coords/coords_peak"][:].astype(bool)
        for name in ("coords/coords_chrom", "coords/coords_center", "coords/coords_peak", "predictions/profs",
                     "predictions/logcounts"):
            data = handle[name][:][peak]
            del handle[name]
            handle.create_dataset(name, data=data)
    got = json.loads(score(str(only_peaks), str(PEER / "observed.bw"), preset="chrombpnet").files[
        "chrombpnet_metrics.json"])
    assert list(got["counts_metrics"]) == ["peaks"] and list(got["profile_metrics"]) == ["peaks"]
    assert got["counts_metrics"]["peaks"] == pytest.approx(peer_metrics()["counts_metrics"]["peaks"], abs=TOL)


@pytest.mark.slow
def test_cli_writes_chrombpnets_file(tmp_path):
    out = tmp_path / "report"
    result = run_cli("score", PEER / "chrombpnet_predictions.h5", PEER / "observed.bw", "--preset", "chrombpnet",
                     "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    assert_metrics_file((out / "chrombpnet_metrics.json").read_text(), peer_metrics())
