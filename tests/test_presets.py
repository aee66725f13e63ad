"""Presets reproduce each peer's numbers: the peer's definitions are restated here in numpy/scipy
float64, independently of the package, and compared with what ``score --preset`` writes."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import gammaln, log_softmax, softmax
from scipy.stats import pearsonr, spearmanr

from bpnet_eval.errors import UsageError
from bpnet_eval.pipeline import score
from tests.support.cases import make_case
from tests.support.cli import run_cli

RTOL = 1e-5


@pytest.fixture
def case(tmp_path):
    peak = np.arange(36) % 3 != 0
    return make_case(tmp_path, n=36, length=400, peak=peak, zero_rows=(4,), large_rows=(6,))


def paths(case):
    return [str(p) for p in case.bigwigs]


# --- bpnet-lite: calculate_performance_measures, restated -------------------------------------------

def lite_pearson(a, b):
    da, db = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    denominator = np.sqrt((da * da).sum(-1) * (db * db).sum(-1))
    return np.where(denominator != 0, (da * db).sum(-1) / np.where(denominator != 0, denominator, 1), 0.0)


def lite_ordinal(a, dtype=np.float64):
    """bpnet-lite's ``x.argsort().argsort()``: torch's (unstable) sort decides the order of ties, so it is
    called here on the same values in the same dtype (``tests/test_peers.py`` checks the result against
    bpnet-lite's own numbers)."""
    import torch

    x = torch.as_tensor(np.asarray(a, dtype=dtype))
    return torch.argsort(torch.argsort(x, dim=-1), dim=-1).numpy().astype(np.float64)


def lite_kl(p, q):
    both = (p != 0) & (q != 0)
    return np.sum(np.where(both, p * np.log(np.where(both, p / np.where(q != 0, q, 1), 1)), 0.0), axis=-1)


def lite_jsd(logps, counts):
    p = np.exp(logps)
    p = p / p.sum(-1, keepdims=True)
    totals = counts.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = counts / totals
    m = 0.5 * (p + q)
    return 0.5 * (lite_kl(p, m) + lite_kl(q, m))


@pytest.mark.slow
def test_bpnet_lite_performance_tsv(case, tmp_path):
    out = tmp_path / "lite"
    result = run_cli("score", case.predictions, *case.bigwigs, "--preset", "bpnet-lite", "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    header, row = (out / "performance.tsv").read_text().splitlines()
    got = dict(zip(header.split("\t"), map(float, row.split("\t"))))
    logits, counts = case.logits.astype(np.float64), case.observed
    logps = log_softmax(logits, axis=-1)                       # per strand, as bpnet-lite evaluates
    mnll = -gammaln(counts.sum(-1) + 1) + gammaln(counts + 1).sum(-1) - (counts * logps).sum(-1)
    probs = np.exp(logps)
    target = np.log(counts.sum(axis=(1, 2)) + 1)
    predicted = case.logcounts[:, 0].astype(np.float64)
    # bpnet-lite's mean over every region and strand: the region with no reads (NaN JSD) makes it NaN
    expected = {"profile_mnll": mnll.mean(), "profile_jsd": lite_jsd(logps, counts).mean(),
                "profile_pearson": lite_pearson(probs, counts).mean(),
                "profile_spearman": lite_pearson(lite_ordinal(probs), lite_ordinal(counts)).mean(),
                "count_pearson": lite_pearson(predicted, target), "count_spearman":
                lite_pearson(lite_ordinal(predicted), lite_ordinal(target)),
                "count_mse": np.mean((predicted - target) ** 2)}
    assert list(got) == list(expected)
    assert np.isnan(expected["profile_jsd"])
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), rel=RTOL, nan_ok=True), name


# --- chrombpnet: scipy's jensenshannon on k / (0.001 + sum k), normalised against uniform ------------

def chrombpnet_jsd(probs, counts):
    observed = counts / (0.001 + counts.sum())
    return jensenshannon(observed, probs) if counts.sum() > 0 else np.nan


@pytest.mark.slow
def test_chrombpnet_metrics_json(tmp_path):
    peak = np.arange(40) % 4 != 0
    case = make_case(tmp_path, n=40, n_tracks=1, length=200, peak=peak, layout="chrombpnet")
    out = tmp_path / "cbp"
    result = run_cli("score", case.predictions, case.bigwigs[0], "--preset", "chrombpnet", "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    got = json.loads((out / "chrombpnet_metrics.json").read_text())
    probs = softmax(case.logits[:, 0].astype(np.float64), axis=-1)
    counts = case.observed[:, 0]
    uniform = np.full(counts.shape[1], 1.0 / counts.shape[1])
    jsd = np.array([chrombpnet_jsd(p, k) for p, k in zip(probs, counts)])
    worst = np.array([chrombpnet_jsd(uniform, k) for k in counts])
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.clip((jsd - worst) / (0 - worst), 0, 1)
    target = np.log(1 + counts.sum(-1))
    predicted = case.logcounts[:, 0].astype(np.float64)
    for group, rows in (("peaks", peak), ("nonpeaks", ~peak), ("peaks_and_nonpeaks", np.ones(40, bool))):
        assert got["profile_metrics"][group]["median_jsd"] == pytest.approx(np.nanmedian(jsd[rows]), rel=RTOL)
        assert got["profile_metrics"][group]["median_norm_jsd"] == pytest.approx(np.nanmedian(norm[rows]), rel=RTOL)
        counts_metrics = got["counts_metrics"][group]
        assert counts_metrics["spearmanr"] == pytest.approx(spearmanr(predicted[rows], target[rows])[0], rel=RTOL)
        assert counts_metrics["pearsonr"] == pytest.approx(pearsonr(predicted[rows], target[rows])[0], rel=RTOL)
        assert counts_metrics["mse"] == pytest.approx(np.mean((predicted[rows] - target[rows]) ** 2), rel=RTOL)


# --- original BPNet: pooled binned auPRC, regression metrics on ln(1 + total) -------------------------

def average_precision(labels, scores):
    """sklearn's definition without sklearn: sum over thresholds of (R_n - R_{n-1}) P_n."""
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    ap, tp, previous_recall, positives = 0.0, 0, 0.0, labels.sum()
    for i in range(len(scores)):
        tp += labels[i]
        if i + 1 < len(scores) and scores[i + 1] == scores[i]:
            continue
        recall = tp / positives
        ap += (recall - previous_recall) * tp / (i + 1)
        previous_recall = recall
    return ap


def bpnet_auprc(counts, probs, binsize):
    """BPNet eval_profile: per-strand fractions, positives >= 0.015, negatives < 0.005, ambiguous ignored;
    regions with mean per-strand total > 2.5/0.015; bins: any positive, max prediction."""
    labels_all, scores_all = [], []
    for k, p in zip(counts, probs):
        if k.sum(-1).mean() <= 2.5 / 0.015:
            continue
        for s in range(k.shape[0]):
            fraction = k[s] / k[s].sum() if k[s].sum() > 0 else np.zeros_like(k[s])
            label = np.where(fraction >= 0.015, 1, np.where(fraction < 0.005, 0, -1))
            prediction = p[s] / p[s].sum()
            n_bins = len(label) // binsize
            for b in range(n_bins):
                window = label[b * binsize:(b + 1) * binsize]
                bin_label = 1 if (window == 1).any() else (-1 if (window == -1).any() else 0)
                if bin_label >= 0:
                    labels_all.append(bin_label)
                    scores_all.append(prediction[b * binsize:(b + 1) * binsize].max())
    return average_precision(np.array(labels_all), np.array(scores_all))


def test_bpnet_metrics_json(case, tmp_path):
    result = score(str(case.predictions), paths(case), preset="bpnet")
    got = json.loads(result.files["bpnet_metrics.json"])
    probs = softmax(case.logits.astype(np.float64), axis=-1)
    for binsize in (1, 10):
        assert got["profile"][f"binsize={binsize}"]["auprc"] == pytest.approx(
            bpnet_auprc(case.observed, probs, binsize), rel=RTOL)
    target = np.log(1 + case.observed.sum(axis=(1, 2)))
    predicted = case.logcounts[:, 0].astype(np.float64)
    residual = target - predicted
    expected = {"mse": np.mean(residual ** 2), "var_explained": 1 - np.var(residual) / np.var(target),
                "pearsonr": pearsonr(predicted, target)[0], "spearmanr": spearmanr(predicted, target)[0],
                "mad": np.mean(np.abs(residual))}
    for name, value in expected.items():
        assert got["counts"][name] == pytest.approx(value, rel=RTOL), name


def test_metric_selection_columns_and_errors(case):
    default = score(str(case.predictions), paths(case))
    assert not any(name.startswith("profile_jsd") for name in default.columns)
    chosen = score(str(case.predictions), paths(case), metrics="jsd_distance,norm_jsd")
    assert {"profile_jsd_distance", "profile_jsd_distance_plus", "profile_norm_jsd_minus"} <= set(chosen.columns)
    everything = score(str(case.predictions), paths(case), metrics="all")
    assert {"profile_auprc_bin10", "profile_spearman_plus", "profile_jsd_shuffled"} <= set(everything.columns)
    assert set(everything.summary["counts"]) == {"pearson", "spearman", "mse", "mae", "variance_explained"}
    assert everything.summary["settings"]["metrics"]["profile"][0] == "profile_mnll"
    # Zero-count region: JSD undefined there, counted, never hidden in the mean.
    stats = everything.summary["metrics"]["profile_jsd_distance"]
    assert stats["n_undefined"] >= 1
    for bad in ({"metrics": "nonsense"}, {"preset": "deepbind"}, {"smooth": "sideways"},
                {"preset": "bpnet", "metrics": "all"}):
        with pytest.raises(UsageError):
            score(str(case.predictions), paths(case), **bad)


def test_smoothing_is_recorded_and_applied(case):
    plain = score(str(case.predictions), paths(case), metrics="pearson")
    smoothed = score(str(case.predictions), paths(case), metrics="pearson", smooth="observed", smooth_sigma=3,
                     smooth_width=21)
    assert smoothed.summary["settings"]["metrics"]["profile_options"]["smooth_observed"] is True
    assert smoothed.summary["settings"]["metrics"]["profile_options"]["width"] == 21
    assert not np.allclose(plain.columns["profile_pearson"], smoothed.columns["profile_pearson"])
    np.testing.assert_array_equal(plain.columns["profile_mnll"], smoothed.columns["profile_mnll"])


@pytest.mark.slow  # scores every metric four times, over 1 s
def test_every_metric_is_identical_across_batch_sizes(case):
    """Shuffled baselines included: their permutations are keyed by the global row, not the batch."""
    reference = score(str(case.predictions), paths(case), metrics="all", batch_size=1024, seed=3)
    for batch_size in (1, 7):
        other = score(str(case.predictions), paths(case), metrics="all", batch_size=batch_size, seed=3)
        for name, values in reference.columns.items():
            np.testing.assert_array_equal(other.columns[name], values, err_msg=name)
    assert reference.summary["profile_auprc"] == other.summary["profile_auprc"]
    reseeded = score(str(case.predictions), paths(case), metrics="jsd_shuffled", seed=4)
    assert not np.allclose(reseeded.columns["profile_jsd_shuffled"], reference.columns["profile_jsd_shuffled"],
                           equal_nan=True)
