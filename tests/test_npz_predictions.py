"""bpnet-lite 0.9 ``.npz`` predictions (profile logits and log counts in two files, regions from --regions)."""

import json
import zipfile

import numpy as np
import pytest
from scipy.special import gammaln, log_softmax

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.pipeline import score
from bpnet_eval.sources.npz import NpzPredictions
from tests.support.cases import make_case
from tests.support.cli import run_cli


def write_bed(path, case):
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
    return path


def expected_mnll(case):
    n = len(case.chrom)
    flat = case.observed.reshape(n, -1)
    logps = log_softmax(case.logits.astype(np.float64).reshape(n, -1), axis=-1)
    return -gammaln(flat.sum(-1) + 1) + gammaln(flat + 1).sum(-1) - (flat * logps).sum(-1)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_predictions_score_like_the_arrays(tmp_path, save):
    case = make_case(tmp_path, layout="nocoords")
    save(tmp_path / "profile.npz", case.logits)
    save(tmp_path / "counts.npz", case.logcounts)
    bed = write_bed(tmp_path / "regions.bed", case)
    result = score(f"{tmp_path / 'profile.npz'},{tmp_path / 'counts.npz'}", [str(p) for p in case.bigwigs], str(bed))
    np.testing.assert_allclose(result.columns["profile_mnll"], expected_mnll(case), rtol=1e-6, atol=1e-8)
    target = np.log1p(case.observed.sum(axis=(1, 2)))
    np.testing.assert_allclose(result.columns["count_log1p_mse"], (target - case.logcounts[:, 0]) ** 2, rtol=1e-6)
    assert result.summary["inputs"]["predictions"]["layout"].startswith("bpnet-lite .npz")


def test_uncompressed_npz_is_memory_mapped(tmp_path):
    case = make_case(tmp_path, layout="nocoords")
    np.savez(tmp_path / "profile.npz", case.logits)
    np.savez(tmp_path / "counts.npz", case.logcounts)
    preds = NpzPredictions([str(tmp_path / "profile.npz"), str(tmp_path / "counts.npz")])
    assert not preds._logits.flags.writeable and not preds._logits.flags.owndata  # a read-only map, not a copy
    logits, logcounts = preds.read(3, 9)
    np.testing.assert_array_equal(logits, case.logits[3:9])
    np.testing.assert_array_equal(logcounts, case.logcounts[3:9])


@pytest.mark.slow
def test_cli_scores_npz_and_refuses_pickles_and_single_files(tmp_path):
    case = make_case(tmp_path, layout="nocoords")
    np.savez(tmp_path / "profile.npz", case.logits)
    np.savez(tmp_path / "counts.npz", case.logcounts)
    bed = write_bed(tmp_path / "regions.bed", case)
    ok = run_cli("score", f"{tmp_path / 'profile.npz'},{tmp_path / 'counts.npz'}", *case.bigwigs, "--regions", bed,
                 "--out", tmp_path / "report", "-q", "--no-plots")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["metrics"]["profile_mnll"]["mean"] == pytest.approx(expected_mnll(case).mean(), rel=1e-6)
    # an object array inside the .npz is pickled data: refused, never loaded
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as archive:
        with archive.open("arr_0.npy", "w") as member:
            np.lib.format.write_array(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = run_cli("score", f"{tmp_path / 'evil.npz'},{tmp_path / 'counts.npz'}", *case.bigwigs, "--regions", bed,
                  "--out", tmp_path / "bad")
    assert bad.returncode == 3 and "pickled data" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    single = run_cli("score", tmp_path / "profile.npz", *case.bigwigs, "--regions", bed, "--out", tmp_path / "one")
    assert single.returncode == 2 and "two files" in single.stderr


def test_npz_errors(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        NpzPredictions([str(tmp_path / "text.npz"), str(tmp_path / "text.npz")])
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 4)), b=np.zeros(3))
    with pytest.raises(InputError, match="not one 'arr_0'"):
        NpzPredictions([str(tmp_path / "two.npz"), str(tmp_path / "two.npz")])
    np.savez(tmp_path / "p.npz", np.zeros((3, 2, 4), np.float32))
    np.savez(tmp_path / "c.npz", np.zeros((5, 1), np.float32))
    with pytest.raises(InputError, match="log counts have shape"):
        NpzPredictions([str(tmp_path / "p.npz"), str(tmp_path / "c.npz")])
    np.savez_compressed(tmp_path / "big.npz", np.zeros((64, 2, 100), np.float32))
    with pytest.raises(InputError, match="does not fit in memory"):
        NpzPredictions([str(tmp_path / "big.npz"), str(tmp_path / "c.npz")], memory_limit=1000)
    with pytest.raises(UsageError, match="two files"):
        score(f"{tmp_path / 'p.npz'}", np.zeros((3, 2, 4)))
