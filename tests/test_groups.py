"""Region groups (--groups): membership rules against brute force, every summary per group against numpy/scipy
float64, the report's group columns and tables, and bad group files as one-line errors."""

import csv
import io

import numpy as np
import pytest
from scipy.stats import spearmanr

import bpnet_eval
from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.groups import MAX_GROUPS, read_all_groups, read_groups
from bpnet_eval.regions import Regions
from bpnet_eval.report.tables import groups_tsv, regions_tsv, summary_tsv
from tests.support.reference import expected_columns


def random_regions(rng, n=300):
    chrom = rng.choice(["chr1", "chr2", "chrX"], size=n)
    start = rng.integers(0, 5000, size=n)
    return Regions(chrom.astype(object), start, start + rng.integers(1, 400, size=n), None, "test")


def test_bed_groups_hold_the_regions_whose_centre_lies_in_an_interval(tmp_path):
    rng = np.random.default_rng(1)
    regions = random_regions(rng)
    labels = ["low", "mid", "high"]
    lines, intervals = [], []
    for _ in range(60):  # overlapping intervals, chromosome names with and without chr, one chromosome absent
        chrom = rng.choice(["chr1", "2", "chr3"])
        s = int(rng.integers(0, 5000))
        e = s + int(rng.integers(0, 600))
        label = rng.choice(labels)
        lines.append(f"{chrom}\t{s}\t{e}\t{label}\textra")
        intervals.append((chrom.removeprefix("chr"), s, e, label))
    lines.append("chr1\t0\t100000\t.")  # '.': no group
    path = tmp_path / "gc bins.bed"
    path.write_text("track name=x\n# comment\n" + "\n".join(lines) + "\n")
    grouping, = read_groups(path, regions)
    assert grouping.name == "gc_bins"
    centre = regions.start + (regions.end - regions.start) // 2
    for k, label in enumerate(grouping.labels):
        expected = np.array([any(c == str(regions.chrom[i]).removeprefix("chr") and s <= centre[i] < e and lab == label
                                 for c, s, e, lab in intervals) for i in range(len(regions))])
        np.testing.assert_array_equal(grouping.member[:, k], expected)
    assert sorted(grouping.labels) == sorted({lab for *_, lab in intervals})
    counts = grouping.member.sum(axis=1)
    described = grouping.describe()
    assert described["n_in_no_group"] == int((counts == 0).sum()) > 0
    assert described["n_in_several_groups"] == int((counts > 1).sum()) > 0
    column = grouping.column()
    for i in range(len(regions)):
        assert column[i] == ",".join(lab for k, lab in enumerate(grouping.labels) if grouping.member[i, k])


def test_tsv_keyed_by_window_or_row(tmp_path):
    regions = Regions(np.array(["chr1", "chr1", "chr2"], dtype=object), [0, 100, 5], [100, 200, 105], None, "t")
    by_window = tmp_path / "keyed.tsv"
    by_window.write_text("chrom\tstart\tend\tgc\tfold\nchr1\t100\t200\tlow\tf1\n1\t100\t200\thigh\t.\n"
                         "chr2\t5\t105\t\tf2\nchr9\t0\t1\tx\ty\n")
    gc, fold = read_groups(by_window, regions)
    assert (gc.name, gc.labels, gc.member.tolist()) == ("gc", ["low", "high"], [[0, 0], [1, 1], [0, 0]])
    assert (fold.labels, fold.member.tolist()) == (["f1", "f2"], [[0, 0], [1, 0], [0, 1]])
    assert "1 line(s) not a scored window" in gc.source
    by_row = tmp_path / "rows.tsv"
    by_row.write_text("row\tclass\n3\tA\n1\tB\n")
    grouping, = read_groups(by_row, Regions.row_numbers(3))
    assert grouping.column().tolist() == ["B", "", "A"]


@pytest.mark.parametrize("content, fragments", [
    ("chr1\t0\t10\n", ["line 1 has 3 column(s)", "column 4"]),
    ("chr1\tx\t10\tA\n", ["line 1", "start 'x' is not an integer"]),
    ("chr1\t20\t10\tA\n", ["line 1", "not a valid interval"]),
    ("chr1\t0\t10\tA,B\n", ["line 1", "contains a comma"]),
    ("".join(f"chr1\t{i}\t{i + 1}\tpeak{i}\n" for i in range(MAX_GROUPS + 1)), ["more than 100 different groups"]),
    ("chrom\tstart\tend\tgc\nchr7\t0\t10\tA\n", ["none of its 1 lines is the window of a scored region"]),
    ("chrom\tstart\tend\tgc\nchr1\t0\t100\n", ["line 2 has 3 field(s) for the 4 columns"]),
    ("row\tgc\n9\tA\n", ["line 2: row 9 is not one of the 2 regions"]),
    ("row\n1\n", ["names no group column"]),
    ("# nothing\n", ["holds no lines"]),
])
def test_bad_group_files_are_one_line_input_errors(tmp_path, content, fragments):
    path = tmp_path / "g.txt"
    path.write_text(content)
    regions = Regions(np.array(["chr1", "chr1"], dtype=object), [0, 100], [100, 200], None, "t")
    with pytest.raises(InputError) as err:
        read_groups(path, regions)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_groupings_need_distinct_names_and_bed_needs_coordinates(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "cls.bed").write_text("chr1\t0\t10\tA\n")
    regions = Regions(np.array(["chr1"], dtype=object), [0], [10], None, "t")
    with pytest.raises(UsageError, match="grouping named 'cls'"):
        read_all_groups([tmp_path / "a" / "cls.bed", tmp_path / "b" / "cls.bed"], regions, 1)
    with pytest.raises(UsageError, match="have none; give --regions"):
        read_all_groups([tmp_path / "a" / "cls.bed"], None, 1)


def scored_with_groups(tmp_path, per_track=False, seed=3):
    rng = np.random.default_rng(seed)
    n, s, length = 60, 2, 40
    observed = rng.poisson(rng.gamma(0.5, 2.0, size=(n, s, length))).astype(np.float64)
    observed[5] = 0
    logits = rng.normal(size=(n, s, length)) + np.log(observed + 0.5)
    totals = observed.sum(axis=-1) if per_track else observed.sum(axis=(1, 2))[:, None]
    logcounts = np.log1p(totals) + rng.normal(0, 0.4, size=totals.shape)
    classes = rng.choice(["A", "B", "C", "."], size=n)
    folds = rng.choice(["f1", "f2"], size=n)
    path = tmp_path / "groups.tsv"
    rows = [f"{i + 1}\t{c}\t{f}" for i, (c, f) in enumerate(zip(classes, folds))]
    rows += [f"{i + 1}\tB\t." for i in range(0, n, 7)]  # these regions are in B as well
    path.write_text("row\tclass\tfold\n" + "\n".join(rows) + "\n")
    result = bpnet_eval.score((logits, logcounts), observed, device="cpu", read_workers=0, groups=[str(path)])
    member = {"A": classes == "A", "C": classes == "C",
              "B": (classes == "B") | (np.arange(n) % 7 == 0), "f1": folds == "f1", "f2": folds == "f2"}
    return result, (logits, logcounts, observed), member


@pytest.mark.parametrize("per_track", [False, True])
def test_every_summary_per_group_matches_numpy(tmp_path, per_track):
    result, (logits, logcounts, observed), member = scored_with_groups(tmp_path, per_track)
    expected = expected_columns(logits, logcounts, observed)
    groups = result.summary["region_groups"]
    assert set(groups) == {"class", "fold"}
    assert set(groups["class"]["groups"]) == {"A", "B", "C"}
    assert groups["class"]["n_in_no_group"] == int((~(member["A"] | member["B"] | member["C"])).sum())
    assert groups["class"]["n_in_several_groups"] == int(((member["A"] | member["C"]) & member["B"]).sum())
    if per_track:
        predicted = np.log1p(np.expm1(logcounts).sum(axis=1))
    else:
        predicted = logcounts[:, 0]
    y = np.log1p(observed.sum(axis=(1, 2)))
    for grouping, labels in (("class", "ABC"), ("fold", ("f1", "f2"))):
        for label in labels:
            rows = member[label]
            part = groups[grouping]["groups"][label]
            assert part["n_regions"] == int(rows.sum())
            for name in ("profile_mnll", "count_log1p_mse", "mixture_loss", "observed_counts"):
                values = expected[name][rows]
                stats = part["metrics"][name]
                np.testing.assert_allclose(stats["mean"], values.mean(), rtol=1e-9)
                np.testing.assert_allclose(stats["median"], np.median(values), rtol=1e-9)
                np.testing.assert_allclose(stats["std"], values.std(), rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(part["counts"]["pearson"], np.corrcoef(predicted[rows], y[rows])[0, 1],
                                       rtol=1e-9)
            np.testing.assert_allclose(part["counts"]["spearman"], spearmanr(predicted[rows], y[rows])[0], rtol=1e-9)
            np.testing.assert_allclose(part["counts"]["mse"], np.mean((predicted[rows] - y[rows]) ** 2), rtol=1e-9)


def test_group_columns_and_tables(tmp_path):
    result, _, member = scored_with_groups(tmp_path)
    text = "".join(regions_tsv(result.regions, result.columns, result.groupings))
    table = list(csv.reader(io.StringIO(text), delimiter="\t"))
    header = table[0]
    assert header[:5] == ["chrom", "start", "end", "group_class", "group_fold"]
    cells = [row[3] for row in table[1:]]
    order = result.groupings[0].labels  # the file's order of first appearance
    assert sorted(order) == ["A", "B", "C"]
    for i, cell in enumerate(cells):
        assert cell == ",".join(label for label in order if member[label][i])
    grouped = list(csv.reader(io.StringIO(groups_tsv(result.summary)), delimiter="\t"))
    assert grouped[0][:4] == ["grouping", "group", "n_regions", "observed_counts_mean"]
    keys = [(row[0], row[1]) for row in grouped[1:]]
    assert keys == [("all", "all"), *(("class", label) for label in order),
                    *(("fold", label) for label in result.groupings[1].labels)]
    row_b = next(row for row in grouped if row[:2] == ["class", "B"])
    column = grouped[0].index("profile_mnll_mean")
    np.testing.assert_allclose(float(row_b[column]), result.columns["profile_mnll"][member["B"]].mean(), rtol=1e-10)
    assert f"class=B\tn_regions\tcount\t{int(member['B'].sum())}" in summary_tsv(result.summary)


def test_terminal_shows_each_grouping_within_80_columns(tmp_path):
    from rich.console import Console

    from bpnet_eval.report.terminal import print_summary

    result, _, member = scored_with_groups(tmp_path)
    for width, terminal in ((80, True), (200, False)):
        console = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)
        print_summary(result.summary, console)
        text = console.file.getvalue()
        assert max(len(line) for line in text.splitlines()) <= max(width, 80)
        assert "groups of class" in text and "groups of fold" in text
        line_b = next(line.split() for line in text.splitlines() if line.split()[:1] == ["B"])
        part = result.summary["region_groups"]["class"]["groups"]["B"]
        assert line_b[1] == str(int(member["B"].sum()))
        assert line_b[2] == f"{part['metrics']['profile_mnll']['mean']:.4g}"
        assert line_b[-1] == f"{part['counts']['spearman']:.4g}"


def test_html_has_a_table_per_grouping(tmp_path):
    from bpnet_eval.report.html import render_html

    result, _, member = scored_with_groups(tmp_path)
    page = render_html(result.summary, {}, "t")
    assert '<table id="groups-class">' in page and '<table id="groups-fold">' in page
    table = page.split('<table id="groups-class">')[1].split("</table>")[0]
    part = result.summary["region_groups"]["class"]["groups"]["A"]
    assert f"<tr><td>A</td><td>{part['n_regions']}</td><td>{part['metrics']['observed_counts']['mean']:.6g}</td>" \
        in table
    assert "region(s) in no group" in page


@pytest.mark.slow
def test_score_with_a_bed_groups_file_on_the_fixture(tmp_path):
    import json

    import h5py
    import pyBigWig

    from tests.support.checks import assert_one_line_error, read_columns
    from tests.support.cli import REPO, run_cli

    fixture = REPO / "data" / "fixtures"
    bed = tmp_path / "zones.bed"  # chr1 split at 100 kb (two groups overlapping on 90-110 kb), chr2 in none
    bed.write_text("chr1\t0\t110000\tnear\nchr1\t90000\t300000000\tfar\n")
    out = tmp_path / "report"
    done = run_cli("score", fixture / "predictions.h5", fixture / "observed.plus.bw", fixture / "observed.minus.bw",
                   "--groups", bed, "--out", out, "--no-plots")
    assert done.returncode == 0, done.stderr
    assert "groups of zones" in done.stdout
    with h5py.File(fixture / "predictions.h5") as h5:
        logits, logcounts = h5["predictions/logits"][()], h5["predictions/logcounts"][()]
        chrom = h5["coords/coords_chrom"][()].astype(str)
        start, end = h5["coords/coords_start"][()], h5["coords/coords_end"][()]
    observed = np.zeros(logits.shape)
    for s, name in enumerate(("observed.plus.bw", "observed.minus.bw")):
        with pyBigWig.open(str(fixture / name)) as bw:
            for i in range(len(start)):
                observed[i, s] = np.nan_to_num(np.array(bw.values(chrom[i], int(start[i]), int(end[i]))))
    expected = expected_columns(logits, logcounts, observed)
    centre = start + (end - start) // 2
    member = {"near": (chrom == "chr1") & (centre < 110000), "far": (chrom == "chr1") & (centre >= 90000)}
    table = read_columns(out / "regions.tsv")
    for i, cell in enumerate(table["group_zones"]):
        assert cell == ",".join(g for g in ("near", "far") if member[g][i])
    summary = json.loads((out / "summary.json").read_text())
    zones = summary["region_groups"]["zones"]
    assert zones["n_in_no_group"] == int((chrom != "chr1").sum())
    assert zones["n_in_several_groups"] == int((member["near"] & member["far"]).sum())
    grouped = read_columns(out / "groups.tsv")
    y, c = np.log1p(observed.sum(axis=(1, 2))), logcounts[:, 0].astype(np.float64)
    for label, rows in member.items():
        assert rows.any()
        part = zones["groups"][label]
        np.testing.assert_allclose(part["metrics"]["profile_mnll"]["mean"], expected["profile_mnll"][rows].mean(),
                                   rtol=1e-9)
        np.testing.assert_allclose(part["counts"]["pearson"], np.corrcoef(c[rows], y[rows])[0, 1], rtol=1e-9)
        k = [g for g, name in zip(grouped["grouping"], grouped["group"])].index("zones") + list(member).index(label)
        np.testing.assert_allclose(float(grouped["mixture_loss_mean"][k]), expected["mixture_loss"][rows].mean(),
                                   rtol=1e-9)
    assert '<table id="groups-zones">' in (out / "report.html").read_text()
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t0\t110000\tnear\nchr1\t5\n")
    refused = run_cli("score", fixture / "predictions.h5", fixture / "observed.plus.bw", fixture / "observed.minus.bw",
                      "--groups", bad, "--out", tmp_path / "refused")
    assert_one_line_error(refused, 3, str(bad), "line 2 has 2 column(s)")
    assert not (tmp_path / "refused").exists()


def test_skipped_regions_are_in_no_group_summary_and_shards_merge_the_groups_exactly(tmp_path):
    import gzip

    import h5py

    from bpnet_eval.options import Job, Policies
    from bpnet_eval.shards import merge, score_shard
    from tests.support.cases import make_case

    case = make_case(tmp_path, n=30, length=40, seed=5)
    logits = case.logits.copy()
    logits[4, 0, 3] = np.nan
    with h5py.File(case.predictions, "r+") as h5:
        h5["predictions/logits"][...] = logits
    path = tmp_path / "halves.bed.gz"  # gzip read as is; window centres split at 20 kb on chr1, all of chr2
    with gzip.open(path, "wt") as handle:
        handle.write("chr1\t0\t20000\tleft\nchr1\t20000\t999999999\tright\nchr2\t0\t999999999\tright\n")
    inputs = (str(case.predictions), [str(p) for p in case.bigwigs])
    options = dict(device="cpu", policies=Policies(nonfinite="skip"), groups=[str(path)])
    full = bpnet_eval.score(*inputs, **options)
    centre = case.start + (case.end - case.start) // 2
    left = (case.chrom == "chr1") & (centre < 20000)
    scored = np.arange(30) != 4
    part = full.summary["region_groups"]["halves"]["groups"]
    assert part["left"]["n_regions"] == int((left & scored).sum())
    assert part["right"]["n_regions"] == int((~left & scored).sum())
    assert part["left"]["metrics"]["profile_mnll"]["n_undefined"] == 0
    np.testing.assert_allclose(part["right"]["metrics"]["mixture_loss"]["mean"],
                               np.mean(full.columns["mixture_loss"][~left & scored]), rtol=1e-12)
    for k in (1, 2, 3):
        score_shard(tmp_path / f"s{k}", (k, 3), Job.of(*inputs, **options))
    merged = merge([tmp_path / f"s{k}" for k in (1, 2, 3)])
    assert merged.summary == full.summary
    assert "".join(regions_tsv(merged.regions, merged.columns, merged.groupings)) == \
        "".join(regions_tsv(full.regions, full.columns, full.groupings))


def test_check_lists_the_groups_or_their_problem(tmp_path):
    from bpnet_eval.validate import format_findings

    rng = np.random.default_rng(0)
    logits, observed = rng.normal(size=(4, 2, 10)), rng.poisson(1.0, size=(4, 2, 10))
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.tsv"
    good.write_text("row\tclass\n1\tA\n2\tA\n2\tB\n")
    bad.write_text("row\tclass\n7\tA\n")
    findings = bpnet_eval.check((logits, np.zeros((4, 1))), observed, groups=[str(good)])
    assert findings.problems == []
    assert "groups class: " in format_findings(findings) and "A (2), B (1); 2 region(s) in no group, 1 in several" \
        in format_findings(findings)
    findings = bpnet_eval.check((logits, np.zeros((4, 1))), observed, groups=[str(bad)])
    assert len(findings.problems) == 1 and "row 7 is not one of the 4 regions" in findings.problems[0].message
