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
