"""``bpnet-eval compare``: two reports over the same regions where B is known to be better on rows 0..k-1
and identical elsewhere; win rates, differences, intervals and changed regions are checked against
numbers recomputed here from the two regions.tsv files."""

import json
import shutil

import numpy as np
import pytest

from bpnet_eval.compare import bootstrap_means, percentile_interval
from bpnet_eval.directions import better_direction, count_direction
from tests.support.cases import make_case, write_predictions
from tests.support.checks import numbers, read_columns as read_tsv

K = 12  # B is truth-like on rows 0..K-1


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory, forked):
    tmp = tmp_path_factory.mktemp("compare")
    case = make_case(tmp, n=50, length=40, seed=5, zero_rows=(1, 30))
    logits_b, logcounts_b = case.logits.copy(), case.logcounts.copy()
    # B: the observed profile itself (up to 1e-3) and the exact log total on rows 0..K-1, A elsewhere
    logits_b[:K] = np.log(case.observed[:K] + 1e-3)
    logcounts_b[:K, 0] = np.log1p(case.observed[:K].sum(axis=(1, 2)))
    preds_b = write_predictions(tmp / "preds_b.h5", logits_b, logcounts_b, case.chrom, case.start, case.end)
    reports = []
    for name, preds in (("a", case.predictions), ("b", preds_b)):
        done = forked("score", preds, *case.bigwigs, "--out", tmp / name, "--no-plots", "-q", "--metrics", "all")
        assert done.returncode == 0, done.stderr
        reports.append(tmp / name)
    out = tmp / "cmp"
    done = forked("compare", reports[0], reports[1], "--out", out, "--resamples", 2000, "--seed", 7)
    assert done.returncode == 0, done.stderr
    return case, reports, out, done


@pytest.mark.slow
def test_win_rate_and_difference_reflect_the_known_subset(two_reports):
    case, (a, b), out, _ = two_reports
    comparison = json.loads((out / "compare.json").read_text())
    ta, tb = read_tsv(a / "regions.tsv"), read_tsv(b / "regions.tsv")
    n = len(ta["chrom"])
    has_counts = case.observed.sum(axis=(1, 2)) > 0
    for metric in ("profile_mnll", "count_log1p_mse", "mixture_loss"):
        result = comparison["metrics"][metric]
        d = numbers(tb, metric) - numbers(ta, metric)
        assert np.all(d[K:] == 0)  # identical predictions elsewhere: exact ties
        assert result["better"] == "lower"
        assert result["mean_difference"] == pytest.approx(d.mean(), rel=1e-9)
        assert result["mean_a"] == pytest.approx(numbers(ta, metric).mean(), rel=1e-9)
        assert result["loss_rate"] == 0.0
        # an all-zero region has MNLL 0 whatever the prediction: a tie, not a win
        winners = np.sum(has_counts[:K]) if metric == "profile_mnll" else K
        assert result["win_rate"] == pytest.approx(winners / n)
        assert result["win_rate"] == pytest.approx(np.mean(d < 0))
        assert result["ci_low"] <= result["mean_difference"] <= result["ci_high"] < 0
        # the percentile interval of a mean is close to mean ± 1.96 standard errors
        half = 1.96 * d.std(ddof=1) / np.sqrt(n)
        assert (result["ci_high"] - result["ci_low"]) / 2 == pytest.approx(half, rel=0.25)


@pytest.mark.slow
def test_shape_metrics_know_their_direction(two_reports):
    """JSD (lower is better) and Pearson (higher is better): B wins on rows 0..K-1 with counts; all-zero
    regions are undefined for both and left out."""
    case, (a, b), out, done = two_reports
    comparison = json.loads((out / "compare.json").read_text())
    ta, tb = read_tsv(a / "regions.tsv"), read_tsv(b / "regions.tsv")
    has_counts = case.observed.sum(axis=(1, 2)) > 0
    for metric, direction in (("profile_jsd_distance", "lower"), ("profile_pearson", "higher")):
        result = comparison["metrics"][metric]
        d = numbers(tb, metric) - numbers(ta, metric)
        assert np.array_equal(np.isfinite(d), has_counts)
        assert result["better"] == direction and result["n"] == has_counts.sum()
        assert result["win_rate"] == pytest.approx(has_counts[:K].sum() / has_counts.sum())
        assert result["loss_rate"] == 0.0
        assert result["mean_difference"] == pytest.approx(np.nanmean(d), rel=1e-9)
        inside = (result["ci_high"] < 0) if direction == "lower" else (result["ci_low"] > 0)
        assert inside
    assert "profile_pearson ↑" in done.stdout and "profile_jsd_distance ↓" in done.stdout
    assert "profile_jsd_shuffled" not in comparison["metrics"]


@pytest.mark.slow
def test_most_changed_regions(two_reports):
    _, (a, b), out, done = two_reports
    comparison = json.loads((out / "compare.json").read_text())
    ta, tb = read_tsv(a / "regions.tsv"), read_tsv(b / "regions.tsv")
    d = numbers(tb, "profile_mnll") - numbers(ta, "profile_mnll")
    expected = np.argsort(-np.abs(d), kind="stable")[:10]
    changed = comparison["metrics"]["profile_mnll"]["most_changed"]
    assert [entry["row"] - 1 for entry in changed] == expected.tolist()
    first = int(expected[0])
    assert changed[0]["region"] == f"{ta['chrom'][first]}:{ta['start'][first]}-{ta['end'][first]}"
    assert changed[0]["difference"] == pytest.approx(d[first], rel=1e-9)
    assert changed[0]["region"] in done.stdout and "profile_mnll" in done.stdout


@pytest.mark.slow
def test_pairwise_tsv_matches_json(two_reports):
    """Two reports: pairwise.tsv holds the B - A view (compare.tsv holds the leaderboards, tested in
    test_compare_many.py)."""
    _, _, out, _ = two_reports
    comparison = json.loads((out / "compare.json").read_text())
    table = read_tsv(out / "pairwise.tsv")
    assert table["metric"] == list(comparison["metrics"])
    for k, metric in enumerate(table["metric"]):
        for field in ("mean_difference", "ci_low", "ci_high", "win_rate"):
            assert float(table[field][k]) == pytest.approx(comparison["metrics"][metric][field], rel=1e-10)
    assert "observed_counts" not in table["metric"] and "predicted_logcounts" not in table["metric"]


@pytest.mark.slow
def test_swapping_reports_negates_differences(two_reports, tmp_path, forked):
    _, (a, b), out, _ = two_reports
    done = forked("compare", b, a, "--out", tmp_path, "--seed", 7, "-q")
    assert done.returncode == 0, done.stderr
    forward = json.loads((out / "compare.json").read_text())["metrics"]["count_log1p_mse"]
    backward = json.loads((tmp_path / "compare.json").read_text())["metrics"]["count_log1p_mse"]
    assert backward["win_rate"] == forward["loss_rate"] and backward["loss_rate"] == forward["win_rate"]
    assert backward["mean_difference"] == pytest.approx(-forward["mean_difference"], rel=1e-12)
    # same seed, same resampled regions: the interval mirrors
    assert backward["ci_low"] == pytest.approx(-forward["ci_high"], rel=1e-9)


@pytest.mark.slow
def test_refuses_reports_over_different_regions(two_reports, tmp_path, forked):
    _, (a, b), _, _ = two_reports
    moved = tmp_path / "moved"
    shutil.copytree(b, moved)
    lines = (moved / "regions.tsv").read_text().splitlines()
    fields = lines[5].split("\t")
    fields[1], fields[2] = str(int(fields[1]) + 10), str(int(fields[2]) + 10)
    lines[5] = "\t".join(fields)
    (moved / "regions.tsv").write_text("\n".join(lines) + "\n")
    done = forked("compare", a, moved, "--out", tmp_path / "x")
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1
    assert "region 5 is" in done.stderr and "1 of 50 regions differ" in done.stderr
    (moved / "regions.tsv").write_text("\n".join(lines[:-3]) + "\n")
    done = forked("compare", a, moved, "--out", tmp_path / "x")
    assert done.returncode == 3 and "47 regions but" in done.stderr
    done = forked("compare", a, tmp_path / "nowhere", "--out", tmp_path / "x")
    assert done.returncode == 3 and "no regions.tsv" in done.stderr
    assert not (tmp_path / "x").exists()


def test_regions_tsv_read_a_few_lines_at_a_time_is_the_same_table(two_reports, tmp_path, monkeypatch):
    """``read_region_table`` in pieces of 3 lines (blank lines and a group column among them) gives the table read
    in one piece; a short line and a word among the numbers in a later piece are named by their line."""
    from bpnet_eval import compare

    _, (a, _), _, _ = two_reports
    report = tmp_path / "a"
    shutil.copytree(a, report)
    lines = (report / "regions.tsv").read_text().splitlines()
    labels = ["", "x", "x,y", "y"]
    lines = ["\t".join([lines[0], "group_gc"])] + ["\t".join([line, labels[k % 4]]) for k, line in enumerate(lines[1:])]
    lines.insert(7, "")
    (report / "regions.tsv").write_text("\n".join(lines) + "\n")
    whole = compare.read_region_table(report)
    monkeypatch.setattr(compare, "REGION_ROWS_PER_READ", 3)
    pieces = compare.read_region_table(report)
    assert set(whole.groups) == {"gc=x", "gc=y"} and len(whole.coordinates["chrom"]) == 50
    for part in ("coordinates", "columns", "groups"):
        assert getattr(pieces, part).keys() == getattr(whole, part).keys()
        for name, values in getattr(whole, part).items():
            np.testing.assert_array_equal(getattr(pieces, part)[name], values, err_msg=name)
            assert getattr(pieces, part)[name].dtype == values.dtype
    short = lines[:20] + [lines[20].rsplit("\t", 2)[0]] + lines[21:]
    (report / "regions.tsv").write_text("\n".join(short) + "\n")
    with pytest.raises(compare.InputError, match="line 20 has"):  # (the blank line is not counted)
        compare.read_region_table(report)
    fields = lines[30].split("\t")
    fields[5] = "many"
    (report / "regions.tsv").write_text("\n".join(lines[:30] + ["\t".join(fields)] + lines[31:]) + "\n")
    with pytest.raises(compare.InputError, match="holds a value that is not a number"):
        compare.read_region_table(report)


def test_bootstrap_helpers():
    constant = np.full(30, -0.5)
    assert percentile_interval(bootstrap_means(constant, 500, 0), 0.95) == (-0.5, -0.5)
    d = np.random.default_rng(2).normal(1.0, 2.0, size=400)
    means = bootstrap_means(d, 3000, 11)
    np.testing.assert_array_equal(means, bootstrap_means(d, 3000, 11))  # seeded
    assert means.mean() == pytest.approx(d.mean(), abs=0.03)
    assert means.std() == pytest.approx(d.std() / np.sqrt(d.size), rel=0.1)


def test_directions():
    assert better_direction("profile_mnll") == "lower" and better_direction("profile_mnll_minus") == "lower"
    assert better_direction("profile_mnll_per_base") == "lower"
    assert better_direction("profile_pearson_plus") == "higher" and better_direction("profile_norm_jsd") == "higher"
    assert better_direction("observed_counts") is None and better_direction("profile_jsd_shuffled") is None
    assert count_direction("mse") == "lower" and count_direction("spearman") == "higher"


def test_bootstrap_means_of_partly_undefined_columns():
    """Recover each resample's row counts from indicator columns, then recompute the means by hand."""
    n = 7
    d = np.random.default_rng(3).normal(size=n)
    with_gaps = d.copy()
    with_gaps[[2, 5]] = np.nan
    means = bootstrap_means(np.column_stack([np.eye(n), d, with_gaps]), 200, 4)
    counts = np.rint(means[:, :n] * n)
    assert np.all(counts.sum(axis=1) == n)
    np.testing.assert_allclose(means[:, n], counts @ d / n, rtol=1e-12)
    defined = np.isfinite(with_gaps)
    with np.errstate(invalid="ignore"):
        expected = counts[:, defined] @ d[defined] / counts[:, defined].sum(axis=1)
    np.testing.assert_allclose(means[:, n + 1], expected, rtol=1e-12)
    assert percentile_interval(np.array([np.nan, np.nan]), 0.9) == (None, None)
