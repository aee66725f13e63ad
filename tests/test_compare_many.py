"""``bpnet-eval compare`` with two or more reports: leaderboards per metric and region group, checked against
numpy computed here (means, best, win rates, and an index-based bootstrap of the same resampled regions),
the bootstrap's coverage on simulated data with a known difference, and five reports compared end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bpnet_eval.compare import (BOOTSTRAP_CHUNK_ELEMENTS, InputError, RegionTable, UsageError, bootstrap_means,
                                count_values, shared_count_values,
                                leaderboards, model_names, percentile_interval, rank_metric, shared_groups,
                                groups_of_column, verdict)
from bpnet_eval.report.compare_figure import comparison_figure
from bpnet_eval.report.compare_html import render_comparison_html
from bpnet_eval.report.compare_tables import leaderboard_tsv
from bpnet_eval.report.compare_terminal import print_comparison
from tests.support.cases import make_case, write_predictions
from tests.support.checks import assert_one_line_error, numbers, read_columns

METRICS = {"profile_mnll": "lower", "profile_pearson": "higher"}


def simulated_tables(n=60, models=4, seed=0, gaps=True):
    """In-memory region tables of ``models`` models: MNLL-like (gamma) and Pearson-like values, model k worse
    by k * 0.3 on average; some regions undefined for one model; a 'peak' group."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 50.0, size=n)
    tables = []
    peak = rng.random(n) < 0.6
    for k in range(models):
        mnll = base + k * 0.3 * 50 + rng.normal(0, 20, size=n)
        pearson = np.clip(0.6 - 0.05 * k + rng.normal(0, 0.1, size=n), -1, 1)
        if gaps:
            pearson[[3, (11 + k) % n]] = np.nan
        coords = {"chrom": np.array(["chr1"] * n), "start": np.arange(n).astype(str),
                  "end": (np.arange(n) + 10).astype(str)}
        groups = {"peaks": peak, "nonpeaks": ~peak}
        tables.append(RegionTable(Path(f"m{k}/regions.tsv"), coords, {"profile_mnll": mnll, "profile_pearson": pearson},
                                  groups))
    return tables


def reference_bootstrap_rows(n, n_resamples, seed):
    """The resampled rows as indices: ``default_rng(seed).integers(0, n)`` drawn ``(R, n)`` at once (one
    chunk: the tests keep R * n under the chunk size)."""
    assert n_resamples * n <= BOOTSTRAP_CHUNK_ELEMENTS
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def test_rank_metric_against_numpy():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(50, 3)) + np.array([0.0, -0.4, 0.2])
    values[[5, 9], 1] = np.nan
    rows = rng.random(50) < 0.7
    board, differences = rank_metric(values, rows, "lower")
    used = rows & np.all(np.isfinite(values), axis=1)
    means = [float(np.mean(values[used, k])) for k in range(3)]
    assert board["n"] == used.sum() and board["n_undefined"] == rows.sum() - used.sum()
    np.testing.assert_allclose(board["means"], means, rtol=1e-13)
    best = int(np.argmin(means))
    assert board["best"] == best and board["order"] == sorted(range(3), key=lambda k: means[k])
    assert set(differences) == set(range(3)) - {best}
    for k, d in differences.items():
        expected = values[:, k] - values[:, best]
        np.testing.assert_array_equal(d[used], expected[used])
        assert np.all(np.isnan(d[~used]))
        assert board["win_rate"][k] == np.mean(expected[used] < 0)
        assert board["loss_rate"][k] == np.mean(expected[used] > 0)
    higher, _ = rank_metric(values, rows, "higher")
    assert higher["best"] == int(np.argmax(means)) and higher["order"][0] == higher["best"]
    empty, none = rank_metric(values, np.zeros(50, dtype=bool), "lower")
    assert empty["best"] is None and empty["n"] == 0 and none == {}


def test_equal_means_rank_in_input_order():
    values = np.column_stack([np.arange(5.0), np.arange(5.0)[::-1], np.arange(5.0)])
    board, differences = rank_metric(values, np.ones(5, dtype=bool), "lower")
    assert board["best"] == 0 and board["order"] == [0, 1, 2]
    assert np.all(differences[2] == 0)


def test_leaderboards_match_an_index_bootstrap():
    """Every interval of every model, metric and group against means over resampled row indices (the same
    rows for all), taken here with plain numpy per resample."""
    tables = simulated_tables()
    names = [f"m{k}" for k in range(len(tables))]
    groups = shared_groups(tables)
    n_resamples, seed, confidence = 400, 9, 0.9
    boards = leaderboards(tables, names, groups, list(METRICS), n_resamples, confidence, seed)
    rows = reference_bootstrap_rows(60, n_resamples, seed)
    assert list(boards) == ["all", "peaks", "nonpeaks"]
    for group, mask in groups.items():
        for metric, direction in METRICS.items():
            values = np.column_stack([t.columns[metric] for t in tables])
            used = mask & np.all(np.isfinite(values), axis=1)
            means = values[used].mean(axis=0)
            best = int(np.argmin(means) if direction == "lower" else np.argmax(means))
            board = boards[group][metric]
            assert board["best"] == names[best] and board["n"] == used.sum()
            assert [e["model"] for e in board["models"]][0] == names[best]
            for entry in board["models"]:
                k = names.index(entry["model"])
                assert entry["mean"] == pytest.approx(means[k], rel=1e-12)
                if k == best:
                    assert entry["verdict"] == "best" and entry["ci_low"] is None and entry["difference"] == 0
                    continue
                d = values[:, k] - values[:, best]
                assert entry["difference"] == pytest.approx(d[used].mean(), rel=1e-9, abs=1e-12)
                resampled = np.array([d[r][used[r]].mean() for r in rows])  # the group's rows in each resample
                low, high = np.percentile(resampled, [5, 95])
                assert entry["ci_low"] == pytest.approx(low, rel=1e-9, abs=1e-12)
                assert entry["ci_high"] == pytest.approx(high, rel=1e-9, abs=1e-12)
                sign = 1 if direction == "lower" else -1
                assert entry["win_rate"] == pytest.approx(np.mean(sign * d[used] < 0))
                assert entry["verdict"] == ("indistinguishable" if low <= 0 <= high else "worse")
            ranks = [e["rank"] for e in board["models"]]
            assert ranks == list(range(1, len(names) + 1))


def test_bootstrap_coverage_on_simulated_data():
    """2000 simulated datasets of 200 regions, model B worse than A by a known 1.5 on average (skewed,
    MNLL-like values; every dataset its own column, resampled together): the 95% interval of the mean
    difference holds 1.5 in about 95% of them, and 90% in about 90%; over a fixed group of the regions
    (the others undefined: a group's interval) likewise."""
    rng = np.random.default_rng(2026)
    n, datasets, delta = 200, 2000, 1.5
    a = rng.gamma(2.0, 30.0, size=(n, datasets))
    b = a + delta + (rng.gamma(2.0, 3.0, size=(n, datasets)) - 6.0)  # skewed noise of mean 0
    in_group = rng.random(n) < 0.5
    differences = np.concatenate([b - a, np.where(in_group[:, None], b - a, np.nan)], axis=1)
    means = bootstrap_means(differences, 1000, 3)
    coverage = {}
    for confidence in (0.95, 0.9):
        intervals = np.array([percentile_interval(means[:, j], confidence) for j in range(2 * datasets)])
        held = (intervals[:, 0] <= delta) & (delta <= intervals[:, 1])
        coverage[confidence] = held[:datasets].mean(), held[datasets:].mean()
    assert 0.93 <= coverage[0.95][0] <= 0.97 and 0.925 <= coverage[0.95][1] <= 0.97, coverage
    assert 0.875 <= coverage[0.9][0] <= 0.925 and 0.87 <= coverage[0.9][1] <= 0.925, coverage


def test_five_model_leaderboard_coverage_and_indistinguishable_rate():
    """Five models whose per-region values differ from the best by known amounts (0, 0, 0.5, 1, 2, in units
    of the noise's standard deviation over sqrt(n) ...): over 300 simulated datasets the interval of each
    model's difference from the best holds its true difference about 95% of the time, and the model equal to
    the best is marked indistinguishable about 95% of the time (a false 'worse' about 5%)."""
    rng = np.random.default_rng(7)
    n, datasets = 120, 300
    shifts = np.array([0.0, 0.0, 4.0, 8.0, 16.0])  # true mean differences; noise sd 20 → se ≈ 2.6
    held, indistinguishable = [], []
    names = [f"m{k}" for k in range(5)]
    groups = {"all": np.ones(n, dtype=bool)}
    for _ in range(datasets):
        base = rng.gamma(2.0, 50.0, size=n)
        values = base[:, None] + shifts + rng.normal(0, 20, size=(n, 5))
        tables = [RegionTable(Path(name), {}, {"profile_mnll": values[:, k]}) for k, name in enumerate(names)]
        board = leaderboards(tables, names, groups, ["profile_mnll"], 400, 0.95, int(rng.integers(1 << 30)))
        entries = {e["model"]: e for e in board["all"]["profile_mnll"]["models"]}
        best = board["all"]["profile_mnll"]["best"]
        if best not in ("m0", "m1"):
            continue
        for k in (2, 3, 4):
            e = entries[names[k]]
            truth = shifts[k] - shifts[names.index(best)]
            held.append(e["ci_low"] <= truth <= e["ci_high"])
        other = entries["m1" if best == "m0" else "m0"]
        indistinguishable.append(other["verdict"] == "indistinguishable")
    assert len(indistinguishable) >= 0.95 * datasets
    assert 0.92 <= np.mean(held) <= 0.98, np.mean(held)
    assert 0.91 <= np.mean(indistinguishable) <= 0.99, np.mean(indistinguishable)


def test_verdicts():
    assert verdict(None, None, "lower") == "undefined"
    assert verdict(-0.1, 0.2, "lower") == "indistinguishable" and verdict(0.0, 0.3, "higher") == "indistinguishable"
    assert verdict(0.1, 0.2, "lower") == "worse" and verdict(-0.2, -0.1, "higher") == "worse"
    assert verdict(-0.2, -0.1, "lower") == "better"


def test_model_names(tmp_path):
    for name in ("x/fold0", "y/fold0", "z/ens"):
        (tmp_path / name).mkdir(parents=True)
    paths = [tmp_path / "x/fold0", tmp_path / "y/fold0", tmp_path / "z/ens"]
    assert model_names(paths) == ["x/fold0", "y/fold0", "z/ens"]
    assert model_names(paths[1:]) == ["fold0", "ens"]
    assert model_names(paths[1:], ["a", "b"]) == ["a", "b"]
    with pytest.raises(UsageError, match="--name given 1 times for 2 reports"):
        model_names(paths[1:], ["a"])
    with pytest.raises(UsageError, match="--name a is given twice"):
        model_names(paths[1:], ["a", "a"])
    with pytest.raises(UsageError, match="the same report is given twice"):
        model_names([paths[0], tmp_path / "x" / ".." / "x" / "fold0"])


def test_groups_from_label_columns():
    assert {k: v.tolist() for k, v in groups_of_column("peak", ["1", "0", "1"], "r").items()} == \
        {"peaks": [True, False, True], "nonpeaks": [False, True, False]}
    found = groups_of_column("group_gc", ["high", "low", "", "high,low"], "r")  # as --groups writes them
    assert list(found) == ["gc=high", "gc=low"]
    assert found["gc=high"].tolist() == [True, False, False, True]
    assert found["gc=low"].tolist() == [False, True, False, True]
    with pytest.raises(InputError, match="column peak holds '2' on line 3"):
        groups_of_column("peak", ["1", "2"], "r")
    tables = simulated_tables(n=10, models=3)
    tables[2].groups = {"gc=high": np.arange(10) < 4}  # one report's groups apply to all (the same regions)
    assert list(shared_groups(tables)) == ["all", "peaks", "nonpeaks", "gc=high"]
    tables[1].groups = {**tables[1].groups, "gc=high": np.arange(10) < 5}
    with pytest.raises(InputError, match=r"m2/regions.tsv: region 5 \(chr1:4-14\) is not in group 'gc=high', "
                                         r"but in m1/regions.tsv it is in"):
        shared_groups(tables)


def comparison_of(tables, names, n_resamples=300):
    groups = shared_groups(tables)
    metrics = list(tables[0].columns)
    return {"models": [{"name": n, "report": f"/r/{n}"} for n in names], "n_regions": len(tables[0]),
            "groups": {g: int(m.sum()) for g, m in groups.items()}, "metric_names": metrics,
            "n_resamples": n_resamples, "confidence": 0.95, "seed": 0,
            "leaderboard": leaderboards(tables, names, groups, metrics, n_resamples, 0.95, 0)}


def test_terminal_fits_80_columns():
    tables = simulated_tables(n=40, models=5)
    for table in tables:  # every metric of --metrics all, per track too
        for metric in ("profile_jsd_divergence", "profile_auprc_bin10", "count_log1p_mse", "mixture_loss"):
            for suffix in ("", "_plus", "_minus"):
                table.columns[metric + suffix] = table.columns["profile_mnll"] * 1e-7
    names = ["fold0-bias-corrected", "fold1", "fold2", "fold3", "ensemble"]
    comparison = comparison_of(tables, names)
    console = Console(width=80, record=True, force_terminal=True, file=open("/dev/null", "w"))
    print_comparison(comparison, console, "profile_mnll")
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "profile_jsd_divergence ↓" in text and "≈best" in text and "best model by region group" in text
    assert "profile_mnll_plus" not in text  # per-track metrics: in compare.tsv and compare.html


def test_tsv_figure_and_page_show_the_leaderboards():
    tables = simulated_tables(n=40, models=3)
    names = ["a", "b", "c"]
    comparison = comparison_of(tables, names)
    rows = read_columns_text(leaderboard_tsv(comparison))
    assert len(rows["model"]) == 3 * 2 * 3  # groups x metrics x models
    for k in range(len(rows["model"])):
        board = comparison["leaderboard"][rows["group"][k]][rows["metric"][k]]
        entry = next(e for e in board["models"] if e["model"] == rows["model"][k])
        assert rows["verdict"][k] == entry["verdict"] and int(rows["rank"][k]) == entry["rank"]
        for field in ("mean", "difference", "ci_low", "ci_high", "win_rate"):
            expected = entry[field]
            assert (rows[field][k] == "nan") if expected is None else float(rows[field][k]) == pytest.approx(expected)
    pytest.importorskip("matplotlib")
    _, drawn = comparison_figure(comparison, ["profile_mnll", "profile_pearson"])
    board = comparison["leaderboard"]["all"]["profile_mnll"]
    by_model = {e["model"]: e for e in board["models"]}
    np.testing.assert_array_equal(drawn["profile_mnll"]["difference"], [by_model[n]["difference"] for n in names])
    page = render_comparison_html(comparison, b"png", "", None)
    assert page.count("<table") == 1 + 1 + 1 + 2 + 1  # models, all, winners, two groups, settings
    assert 'id="leaderboard-peaks"' in page and "data:image/png;base64," in page


def read_columns_text(text):
    lines = [line.split("\t") for line in text.splitlines()]
    return {name: [row[k] for row in lines[1:]] for k, name in enumerate(lines[0])}


# --------------------------------------------------------------------------- five reports, end to end

@pytest.fixture(scope="module")
def five_reports(tmp_path_factory, forked):
    """Five models of one case: the case's predictions (base), an exact copy (twin), the observed profile
    itself on every region (oracle), and two with more noise in the logits and noise in the log counts
    (noisy, noisier)."""
    tmp = tmp_path_factory.mktemp("five")
    case = make_case(tmp, n=80, length=40, seed=11, zero_rows=(2, 40), peak=np.arange(80) % 3 > 0)
    rng = np.random.default_rng(5)
    variants = {"base": case.logits, "twin": case.logits, "oracle": np.log(case.observed + 1e-3),
                "noisy": case.logits + rng.normal(0, 1.0, case.logits.shape),
                "noisier": case.logits + rng.normal(0, 2.0, case.logits.shape)}
    # a groups BED: chr1 split at its middle into two groups; every report but the twin scored with it
    middle = case.chrom_sizes["chr1"] // 2
    bed = tmp / "halves.bed"
    bed.write_text(f"chr1\t0\t{middle}\tleft\nchr1\t{middle}\t{case.chrom_sizes['chr1']}\tright\n")
    reports = []
    for name, logits in variants.items():
        logcounts = case.logcounts + (rng.normal(0, 0.5, case.logcounts.shape) if name.startswith("noisy") else 0)
        preds = write_predictions(tmp / f"{name}.h5", logits.astype(np.float32), logcounts.astype(np.float32),
                                  case.chrom, case.start, case.end, peak=np.arange(80) % 3 > 0)
        groups = [] if name == "twin" else ["--groups", bed]
        done = forked("score", preds, *case.bigwigs, "--out", tmp / name, "--no-plots", "-q", "--metrics", "all",
                      *groups)
        assert done.returncode == 0, done.stderr
        reports.append(tmp / name)
    out = tmp / "cmp"
    done = forked("compare", *reports, "--out", out, "--resamples", 1000, "--seed", 3)
    assert done.returncode == 0, done.stderr
    return case, reports, out, done


@pytest.mark.slow
def test_five_reports_in_one_command(five_reports):
    case, reports, out, done = five_reports
    comparison = json.loads((out / "compare.json").read_text())
    names = [m["name"] for m in comparison["models"]]
    assert names == ["base", "twin", "oracle", "noisy", "noisier"] and "metrics" not in comparison
    assert sorted(p.name for p in out.iterdir()) == [".bpnet-eval-report", "compare.html", "compare.json",
                                                     "compare.png", "compare.tsv"]
    tables = [read_columns(r / "regions.tsv") for r in reports]
    peak = np.array(tables[0]["peak"]) == "1"
    centre = (case.start + case.end) // 2
    left = (case.chrom == "chr1") & (centre < case.chrom_sizes["chr1"] // 2)
    right = (case.chrom == "chr1") & ~left
    expected = {"all": np.ones(80, dtype=bool), "peaks": peak, "nonpeaks": ~peak, "halves=left": left,
                "halves=right": right}
    assert comparison["groups"] == {g: int(rows.sum()) for g, rows in expected.items()}
    for group, rows in expected.items():
        for metric in ("profile_mnll", "profile_pearson", "profile_jsd_distance_plus"):
            values = np.column_stack([numbers(t, metric) for t in tables])
            used = rows & np.all(np.isfinite(values), axis=1)
            means = values[used].mean(axis=0)
            board = comparison["leaderboard"][group][metric]
            best = int(np.argmin(means) if board["better"] == "lower" else np.argmax(means))
            assert board["best"] == names[best] == "oracle" and board["n"] == used.sum()
            entries = {e["model"]: e for e in board["models"]}
            for k, name in enumerate(names):
                d = values[used, k] - values[used, best]
                assert entries[name]["difference"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-12)
            assert entries["base"]["mean"] == entries["twin"]["mean"]
            assert entries["noisier"]["verdict"] == "worse"
    # the count Pearson across regions, per group, against scipy on regions.tsv and summary.json's own
    from scipy import stats

    y = np.log1p(numbers(tables[0], "observed_counts"))
    for group, rows in expected.items():
        board = comparison["leaderboard"][group]["counts_pearson"]
        r = [stats.pearsonr(numbers(t, "predicted_logcounts")[rows], y[rows])[0] for t in tables]
        assert board["best"] == names[int(np.argmax(r))] == "base"  # equal r: the first given
        for entry in board["models"]:
            assert entry["mean"] == pytest.approx(r[names.index(entry["model"])], rel=1e-9)
        assert {e["model"]: e["verdict"] for e in board["models"]}["twin"] == "indistinguishable"
    summaries = [json.loads((r / "summary.json").read_text()) for r in reports]
    for name, summary in zip(names, summaries):
        entry = next(e for e in comparison["leaderboard"]["all"]["counts_pearson"]["models"] if e["model"] == name)
        assert entry["mean"] == pytest.approx(summary["counts"]["pearson"], rel=1e-9)
    # the twin is the base model: same difference, same interval, ranked right after it
    board = comparison["leaderboard"]["all"]["profile_mnll"]
    order = [e["model"] for e in board["models"]]
    assert order.index("twin") == order.index("base") + 1
    base, twin = (next(e for e in board["models"] if e["model"] == m) for m in ("base", "twin"))
    assert (base["ci_low"], base["ci_high"]) == (twin["ci_low"], twin["ci_high"])
    tsv = read_columns(out / "compare.tsv")
    assert len(tsv["model"]) == 5 * len(comparison["metric_names"]) * 5 and comparison["metric_names"][-1] == \
        "counts_pearson"
    assert "oracle" in done.stdout and "best model by region group" in done.stdout


@pytest.mark.slow
def test_five_reports_names_and_refusals(five_reports, tmp_path, forked):
    _, reports, _, _ = five_reports
    done = forked("compare", *reports[:3], "--name", "A", "--name", "B", "--name", "C", "--out", tmp_path / "n",
                  "-q", "--no-plots", "--resamples", 50)
    assert done.returncode == 0, done.stderr
    comparison = json.loads((tmp_path / "n" / "compare.json").read_text())
    assert [m["name"] for m in comparison["models"]] == ["A", "B", "C"]
    assert not (tmp_path / "n" / "compare.png").exists() and (tmp_path / "n" / "compare.html").exists()
    assert_one_line_error(forked("compare", *reports[:3], "--name", "A", "--out", tmp_path / "x"), 2,
                          "--name given 1 times for 3 reports")
    assert_one_line_error(forked("compare", reports[0], "--out", tmp_path / "x"), 2, "two or more reports")
    assert_one_line_error(forked("compare", reports[0], reports[1], reports[0], "--out", tmp_path / "x"), 2,
                          "the same report is given twice")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- count Pearson across regions

def count_tables(n=80, seed=0, per_track=False):
    """Three models' predicted log counts (noise 0.3, 0.6, 1.0) for one set of observed totals; as one column
    or per track (plus, minus), with the settings a report would hold."""
    rng = np.random.default_rng(seed)
    observed = rng.poisson(rng.gamma(2.0, 50.0, size=n)).astype(float)
    observed[[4, 9]] = 0.0
    tables = []
    for k, noise in enumerate((0.3, 0.6, 1.0)):
        c = np.log1p(observed) + rng.normal(0, noise, size=n)
        columns = {"observed_counts": observed}
        if per_track:
            share = rng.uniform(0.3, 0.7, size=n)
            columns["predicted_logcounts_plus"] = np.log1p(share * np.expm1(c))
            columns["predicted_logcounts_minus"] = np.log1p((1 - share) * np.expm1(c))
        else:
            columns["predicted_logcounts"] = c
        coords = {"chrom": np.array(["chr1"] * n), "start": np.arange(n).astype(str),
                  "end": (np.arange(n) + 10).astype(str)}
        settings = {"track_names": ["plus", "minus"], "metrics": {"count_target": "log1p"}}
        tables.append(RegionTable(Path(f"c{k}"), coords, columns, {"peaks": np.arange(n) % 2 == 0}, settings))
    return tables


@pytest.mark.parametrize("per_track", [False, True])
def test_count_pearson_against_an_index_bootstrap(per_track):
    """The count Pearson r(c, ln(1 + N)) per model and group against scipy, and its interval against r taken
    with np.corrcoef on the resampled rows (the same rows as every other interval)."""
    from scipy import stats

    tables = count_tables(per_track=per_track)
    names = ["c0", "c1", "c2"]
    groups = shared_groups(tables)
    counts = tuple(np.column_stack(v) for v in zip(*[count_values(t) for t in tables]))
    boards = leaderboards(tables, names, groups, [], 300, 0.95, 5, counts)
    rows = reference_bootstrap_rows(80, 300, 5)
    y = np.log1p(tables[0].columns["observed_counts"])
    for group, mask in groups.items():
        c = [np.log1p(np.expm1(t.columns["predicted_logcounts_plus"]) + np.expm1(t.columns["predicted_logcounts_minus"]))
             if per_track else t.columns["predicted_logcounts"] for t in tables]
        r = [stats.pearsonr(c[k][mask], y[mask])[0] for k in range(3)]
        board = boards[group]["counts_pearson"]
        assert board["better"] == "higher" and board["n"] == mask.sum()
        assert board["best"] == names[int(np.argmax(r))]
        best = int(np.argmax(r))
        for entry in board["models"]:
            k = names.index(entry["model"])
            assert entry["mean"] == pytest.approx(r[k], rel=1e-10)
            assert entry["win_rate"] is None
            if k == best:
                continue
            resampled = []
            for picked in rows:
                picked = picked[mask[picked]]
                resampled.append(np.corrcoef(c[k][picked], y[picked])[0, 1]
                                 - np.corrcoef(c[best][picked], y[picked])[0, 1])
            low, high = np.percentile(resampled, [2.5, 97.5])
            assert entry["ci_low"] == pytest.approx(low, rel=1e-8, abs=1e-12)
            assert entry["ci_high"] == pytest.approx(high, rel=1e-8, abs=1e-12)


def test_count_pearson_coverage_and_undefined_models():
    """y ~ N(0, 1), model k predicts y + N(0, s_k²): true r_k = 1 / sqrt(1 + s_k²). Over 300 simulated
    datasets of 200 regions the 95% interval of r_k - r_best holds the true difference about 95% of the time.
    A model predicting one value everywhere has no r: ranked last, undefined."""
    rng = np.random.default_rng(12)
    noise = np.array([0.5, 0.7, 1.0])
    truth = 1 / np.sqrt(1 + noise ** 2)
    held = []
    names = ["a", "b", "c"]
    groups = {"all": np.ones(200, dtype=bool)}
    for _ in range(300):
        y = rng.normal(size=200)
        x = y[:, None] + rng.normal(size=(200, 3)) * noise
        board = leaderboards([None] * 3, names, groups, [], 400, 0.95, int(rng.integers(1 << 30)),
                             (x, np.repeat(y[:, None], 3, axis=1)))["all"]["counts_pearson"]
        best = names.index(board["best"])
        for e in board["models"]:
            k = names.index(e["model"])
            if k != best:
                held.append(e["ci_low"] <= truth[k] - truth[best] <= e["ci_high"])
    assert 0.92 <= np.mean(held) <= 0.98, np.mean(held)
    x[:, 1] = 3.0
    board = leaderboards([None] * 3, names, groups, [], 100, 0.95, 0, (x, np.repeat(y[:, None], 3, axis=1)))
    entries = board["all"]["counts_pearson"]["models"]
    assert [e["model"] for e in entries][-1] == "b"
    assert entries[-1]["verdict"] == "undefined" and entries[-1]["rank"] is None and entries[-1]["mean"] is None
    assert [e["rank"] for e in entries[:2]] == [1, 2] and entries[1]["verdict"] in ("worse", "indistinguishable")


def test_compare_reports_is_part_of_the_python_api():
    import bpnet_eval
    from bpnet_eval.compare import compare_reports

    assert bpnet_eval.compare_reports is compare_reports and "compare_reports" in bpnet_eval.__all__
    with pytest.raises(UsageError, match="two or more reports, not 1"):
        compare_reports("one")


def test_count_pearson_needs_one_count_target_and_the_columns():
    tables = count_tables(n=20)
    c, y = shared_count_values(tables)
    assert c.shape == y.shape == (20, 3)
    np.testing.assert_array_equal(y[:, 1], np.log1p(tables[1].columns["observed_counts"]))
    tables[2].settings = {**tables[2].settings, "metrics": {"count_target": "log"}}
    assert shared_count_values(tables) is None  # r against ln(1 + N) and against ln N: not comparable
    for table in tables:
        table.settings = {**table.settings, "metrics": {"count_target": "log"}}
    _, y = shared_count_values(tables)
    with np.errstate(divide="ignore"):
        expected = np.log(tables[0].columns["observed_counts"])
    assert np.all(np.isneginf(y[[4, 9]])) and np.array_equal(y[:, 0], expected)
    del tables[1].columns["predicted_logcounts"]
    assert shared_count_values(tables) is None
