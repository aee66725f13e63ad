"""``--count-target log1p|log``: predicted log counts against ``ln(1 + K)`` (the seed; default) or ``ln K``
(BPReveal's training target), checked against numpy/scipy in float64."""

import json

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from bpnet_eval.errors import UsageError
from bpnet_eval.pipeline import score
from tests.support.cases import make_case
from tests.support.cli import run_cli
from tests.support.reference import expected_columns

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def arrays(per_track=False, seed=3):
    rng = np.random.default_rng(seed)
    observed = rng.poisson(0.4, size=(40, 2, 50)).astype(np.float64)
    observed[:4] = 0  # regions without reads: ln K undefined
    logits = rng.normal(size=(40, 2, 50))
    logcounts = rng.normal(2.5, 1.0, size=(40, 2 if per_track else 1))
    return logits, logcounts, observed


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_log_target_per_region_and_counts(dtype):
    logits, logcounts, observed = arrays()
    result = score((logits, logcounts), observed, count_target="log", count_loss_weight=0.5, dtype=dtype)
    columns, total = result.columns, observed.sum(axis=(1, 2))
    with np.errstate(divide="ignore"):
        expected = np.where(total > 0, (np.log(total) - logcounts[:, 0]) ** 2, np.nan)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(columns["count_log_mse"], expected, rtol=rtol, equal_nan=True)
    mnll = expected_columns(logits, logcounts, observed)["profile_mnll"]
    np.testing.assert_allclose(columns["mixture_loss"], mnll + 0.5 * expected, rtol=rtol, equal_nan=True)
    assert "count_log1p_mse" not in columns
    summary = result.summary
    assert summary["metrics"]["count_log_mse"]["n_undefined"] == 4
    assert summary["settings"]["metrics"]["count_target"] == "log"
    keep = total > 0  # ln K: regions without reads are left out of the count metrics
    y, c = np.log(total[keep]), logcounts[keep, 0]
    rel = 1e-9 if dtype == "float64" else 1e-6  # float32: the predicted log counts are rounded to float32
    assert summary["counts"]["pearson"] == pytest.approx(pearsonr(c, y)[0], rel=rel)
    assert summary["counts"]["spearman"] == pytest.approx(spearmanr(c, y)[0], rel=rel)
    assert summary["counts"]["mse"] == pytest.approx(np.mean((y - c) ** 2), rel=rel)


def test_default_is_log1p():
    logits, logcounts, observed = arrays()
    result = score((logits, logcounts), observed)
    expected = (np.log1p(observed.sum(axis=(1, 2))) - logcounts[:, 0]) ** 2
    np.testing.assert_allclose(result.columns["count_log1p_mse"], expected, rtol=1e-12)
    assert "count_log_mse" not in result.columns
    assert result.summary["settings"]["metrics"]["count_target"] == "log1p"


def test_log_target_per_track_logcounts():
    """One log count per track: per-track targets ln K_s, and the region's predicted total ln(sum_s e^c_s)."""
    logits, logcounts, observed = arrays(per_track=True)
    observed[10, 1] = 0  # one empty track: its ln K_s is undefined, so is the region's mean over tracks
    result = score((logits, logcounts), observed, count_target="log")
    per_track = observed.sum(axis=2)
    with np.errstate(divide="ignore"):
        terms = np.where(per_track > 0, (np.log(per_track) - logcounts) ** 2, np.nan)
    np.testing.assert_allclose(result.columns["count_log_mse"], terms.mean(axis=1), rtol=1e-12, equal_nan=True)
    total, keep = observed.sum(axis=(1, 2)), observed.sum(axis=(1, 2)) > 0
    predicted_total = np.log(np.exp(logcounts).sum(axis=1))
    y, c = np.log(total[keep]), predicted_total[keep]
    assert result.summary["counts"]["pearson"] == pytest.approx(pearsonr(c, y)[0], rel=1e-9)
    assert result.summary["counts"]["mse"] == pytest.approx(np.mean((y - c) ** 2), rel=1e-9)


def test_bad_count_target_is_a_usage_error():
    logits, logcounts, observed = arrays()
    with pytest.raises(UsageError, match="--count-target must be log1p"):
        score((logits, logcounts), observed, count_target="ln")


def test_presets_set_their_peers_target():
    from bpnet_eval.presets import make_plan

    assert make_plan(preset="bpreveal").count_target == "log"
    assert make_plan(preset="bpnet-lite").count_target == "log1p"
    assert make_plan(preset="chrombpnet").count_target == "log1p"
    assert make_plan(preset="bpreveal", count_target="log1p").count_target == "log1p"  # the flag wins


def test_bpreveal_layout_names_the_flag(tmp_path):
    """A BPReveal file scored against ln(1 + K): one warning that names --count-target log; none with it."""
    case = make_case(tmp_path, layout="bpreveal")
    truth = [str(p) for p in case.bigwigs]
    warnings = score(str(case.predictions), truth).summary["warnings"]
    notes = [w for w in warnings if "--count-target log " in w + " "]
    assert len(notes) == 1 and "ln K" in notes[0] and str(case.predictions) in notes[0]
    assert not [w for w in score(str(case.predictions), truth, count_target="log").summary["warnings"]
                if "--count-target" in w]
    (tmp_path / "native").mkdir()
    from bpnet_eval.pipeline import check

    assert [w for w in check(str(case.predictions), truth).warnings if "--count-target log " in w + " "] == notes
    native = make_case(tmp_path / "native", layout="native")
    assert not [w for w in score(str(native.predictions), [str(p) for p in native.bigwigs]).summary["warnings"]
                if "--count-target" in w]


@pytest.mark.slow
def test_cli_count_target(tmp_path):
    case = make_case(tmp_path, layout="bpreveal")
    out = tmp_path / "report"
    result = run_cli("score", case.predictions, *case.bigwigs, "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    assert sum("--count-target log" in line for line in result.stderr.splitlines()) == 1
    result = run_cli("score", case.predictions, *case.bigwigs, "--count-target", "log", "--out", tmp_path / "log",
                     "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "--count-target" not in result.stderr
    summary = json.loads((tmp_path / "log" / "summary.json").read_text())
    assert summary["settings"]["metrics"]["count_target"] == "log"
    assert "count_log_mse" in (tmp_path / "log" / "regions.tsv").read_text().splitlines()[0].split("\t")
    assert "count_target: log" in (tmp_path / "log" / "report.html").read_text()
    bad = run_cli("score", case.predictions, *case.bigwigs, "--count-target", "ln", "--out", tmp_path / "bad")
    assert bad.returncode == 2


def test_per_strand_predicted_bigwigs_give_per_track_totals(tmp_path):
    """``--pred-logcounts-per track``: one predicted log count per strand from its own bigWig's total (BPNet
    export-bw and bpnet 2.0 predict a total per strand), scored per track against ln(1 + K_s)."""
    import pyBigWig

    from tests.support.cases import write_window_tracks

    case = make_case(tmp_path, layout="native")
    rng = np.random.default_rng(2)
    values = rng.gamma(0.8, 2.0, size=case.observed.shape) + 1e-3
    paths = write_window_tracks(tmp_path, case, values)
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"{c}\t{a}\t{b}\n" for c, a, b in zip(case.chrom, case.start, case.end)))
    stored = np.zeros(values.shape)  # float32 in the file
    for s, path in enumerate(paths):
        with pyBigWig.open(path) as bw:
            for i in range(len(case.chrom)):
                stored[i, s] = bw.values(case.chrom[i], int(case.start[i]), int(case.end[i]), numpy=True)
    truth = [str(p) for p in case.bigwigs]
    result = score(",".join(paths), truth, str(bed), pred_logcounts_per="track")
    predicted = np.log(stored.sum(axis=2))  # (N, S): each strand's own total
    observed = case.observed.sum(axis=2)
    for s, name in enumerate(("plus", "minus")):
        np.testing.assert_allclose(result.columns[f"predicted_logcounts_{name}"], predicted[:, s], rtol=1e-12)
    np.testing.assert_allclose(result.columns["count_log1p_mse"], ((np.log1p(observed) - predicted) ** 2).mean(axis=1),
                               rtol=1e-12)
    assert result.summary["inputs"]["predictions"]["logcounts_per"] == "track"
    assert result.summary["counts_per_track"]["plus"]["pearson"] == pytest.approx(
        pearsonr(predicted[:, 0], np.log1p(observed[:, 0]))[0], rel=1e-9)
    joint = score(",".join(paths), truth, str(bed))  # the default: one total over both strands
    np.testing.assert_allclose(joint.columns["predicted_logcounts"], np.log(stored.sum(axis=(1, 2))), rtol=1e-12)
    with pytest.raises(UsageError, match="--pred-logcounts-per"):
        score(str(case.predictions), truth, pred_logcounts_per="track")


def test_every_convention_named_in_settings():
    """``settings.metrics.conventions`` names the conventions of the run, as each preset sets them."""
    logits, logcounts, observed = arrays()
    default = score((logits, logcounts), observed).summary["settings"]["metrics"]["conventions"]
    assert default["count_target"] == "log1p: ln(1 + K)" and default["spearman_ties"] == "averaged ranks (scipy)"
    assert default["zero_variance_correlation"] == "NaN (undefined)" and default["smoothing"] == "none"
    lite = score((logits, logcounts), observed, preset="bpnet-lite").summary["settings"]["metrics"]["conventions"]
    assert "argsort" in lite["spearman_ties"] and lite["zero_variance_correlation"] == "0"
    assert lite["results_precision"].startswith("float32")
    cbp = score((logits, logcounts), observed, preset="chrombpnet").summary["settings"]["metrics"]["conventions"]
    assert cbp["observed_probabilities"] == "k / (0.001 + N)"
    smooth = score((logits, logcounts), observed, smooth="observed").summary["settings"]["metrics"]["conventions"]
    assert smooth["smoothing"] == "gaussian sigma 7.0 width 81 on observed"
    log = score((logits, logcounts), observed, count_target="log").summary["settings"]["metrics"]["conventions"]
    assert log["count_target"] == "log: ln K" and "(ln K - c)^2" in log["seed_losses"]
