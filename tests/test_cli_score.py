"""End to end: the installed ``bpnet-eval score`` on the bundled fixture and on generated cases."""

import csv
import json

import h5py
import numpy as np
import pyBigWig
import pytest
from scipy.special import gammaln, log_softmax

from tests.support.cases import make_case
from tests.support.cli import REPO, run_cli

pytestmark = pytest.mark.slow  # every test runs the installed CLI in a subprocess

FIXTURE = REPO / "data" / "fixtures"


def read_tsv(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows


def fixture_arrays():
    """The fixture read independently: h5py for predictions, pyBigWig per window for the truth."""
    with h5py.File(FIXTURE / "predictions.h5", "r") as h5:
        logits = h5["predictions/logits"][:].astype(np.float64)
        logcounts = h5["predictions/logcounts"][:, 0].astype(np.float64)
        chrom = [c.decode() if isinstance(c, bytes) else c for c in h5["coords/coords_chrom"][:]]
        start, end = h5["coords/coords_start"][:], h5["coords/coords_end"][:]
        peak = h5["coords/coords_peak"][:]
    observed = np.zeros_like(logits)
    for s, strand in enumerate(("plus", "minus")):
        with pyBigWig.open(str(FIXTURE / f"observed.{strand}.bw")) as bw:
            for i in range(len(chrom)):
                observed[i, s] = np.nan_to_num(bw.values(chrom[i], int(start[i]), int(end[i]), numpy=True))
    return logits, logcounts, observed, chrom, start, end, peak


def test_fixture_report_matches_independent_computation(tmp_path):
    out = tmp_path / "report"
    result = run_cli("score", FIXTURE / "predictions.h5", FIXTURE / "observed.plus.bw", FIXTURE / "observed.minus.bw",
                     "--out", out, "--count-loss-weight", "0.5")
    assert result.returncode == 0, result.stderr
    assert "profile_mnll" in result.stdout
    logits, logcounts, observed, chrom, start, end, peak = fixture_arrays()
    n = len(chrom)
    rows = read_tsv(out / "regions.tsv")
    assert len(rows) == n
    assert [r["chrom"] for r in rows] == chrom
    assert [int(r["start"]) for r in rows] == list(start) and [int(r["end"]) for r in rows] == list(end)
    assert [int(r["peak"]) for r in rows] == list(peak)
    flat = observed.reshape(n, -1)
    mnll = -gammaln(flat.sum(1) + 1) + gammaln(flat + 1).sum(1) - (flat * log_softmax(logits.reshape(n, -1), axis=1)).sum(1)
    count = (np.log1p(flat.sum(1)) - logcounts) ** 2
    per_strand = (-gammaln(observed.sum(2) + 1) + gammaln(observed + 1).sum(2)
                  - (observed * log_softmax(logits, axis=2)).sum(2))
    column = lambda name: np.array([float(r[name]) for r in rows])  # noqa: E731
    np.testing.assert_allclose(column("observed_counts"), flat.sum(1))
    np.testing.assert_allclose(column("predicted_logcounts"), logcounts, rtol=1e-7)
    np.testing.assert_allclose(column("profile_mnll"), mnll, rtol=1e-6)
    np.testing.assert_allclose(column("count_log1p_mse"), count, rtol=1e-6)
    np.testing.assert_allclose(column("mixture_loss"), mnll + 0.5 * count, rtol=1e-6)
    np.testing.assert_allclose(column("profile_mnll_plus"), per_strand[:, 0], rtol=1e-6)
    np.testing.assert_allclose(column("profile_mnll_minus"), per_strand[:, 1], rtol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_regions"] == n and summary["count_loss_weight"] == 0.5
    assert summary["metrics"]["mixture_loss"]["mean"] == pytest.approx((mnll + 0.5 * count).mean(), rel=1e-6)
    assert summary["metrics"]["profile_mnll"]["median"] == pytest.approx(np.median(mnll), rel=1e-6)
    assert summary["groups"]["peaks"]["n_regions"] == int(peak.sum())
    assert summary["settings"]["count_loss_weight"] == 0.5
    assert summary["inputs"]["predictions"]["layout"].startswith("logits")
    long = read_tsv(out / "summary.tsv")
    means = {(r["group"], r["metric"]): float(r["value"]) for r in long if r["statistic"] == "mean"}
    assert means[("all", "mixture_loss")] == pytest.approx(summary["metrics"]["mixture_loss"]["mean"], rel=1e-10)
    assert float(next(r["value"] for r in long if r["metric"] == "counts" and r["statistic"] == "pearson"
                      and r["group"] == "all")) == pytest.approx(summary["counts"]["pearson"], rel=1e-10)


def test_default_out_dir_and_plain_progress(tmp_path):
    case = make_case(tmp_path)
    result = run_cli("score", case.predictions, *case.bigwigs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bpnet-eval-preds" / "summary.json").exists()
    assert "scored 40/40 regions" in result.stderr  # stderr is a pipe: plain progress lines


@pytest.mark.parametrize("problem", ["truth_count", "width", "chrom"])
def test_bad_inputs_give_one_line_and_no_report(tmp_path, problem):
    case = make_case(tmp_path)
    args = ["score", case.predictions, *case.bigwigs, "--out", tmp_path / "out"]
    if problem == "truth_count":
        args = ["score", case.predictions, case.bigwigs[0], "--out", tmp_path / "out"]
        expect, code = "1 observed track(s) for 2 predicted", 2
    elif problem == "width":
        bed = tmp_path / "r.bed"
        bed.write_text("".join(f"{c}\t{s}\t{e + 1}\n" for c, s, e in zip(case.chrom, case.start, case.end)))
        args += ["--regions", bed]
        expect, code = "51 bp wide but the predictions have L = 50", 3
    else:
        bed = tmp_path / "r.bed"
        bed.write_text("".join(f"chrUn\t{s}\t{e}\n" for s, e in zip(case.start, case.end)))
        args += ["--regions", bed]
        expect, code = "chromosome 'chrUn'", 3
    result = run_cli(*args)
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
