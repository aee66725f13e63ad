"""Bad inputs through the installed CLI: exit code, exactly one stderr line, no report left behind;
and the policies (chr-name matching, --off-end skip/pad, --nonfinite skip, non-integer counts) with the
exact report contents, checked against an independent numpy/scipy computation."""

import csv
import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from bpnet_eval.report.files import marker_text
from tests.support.cases import make_case, write_bigwig, write_predictions
from tests.support.cli import CLI, ForkedCli, run_cli
from tests.support.reference import expected_columns
from tests.support.checks import assert_one_line_error

REPORT_FILES = ("summary.json", "regions.tsv", "summary.tsv", "skipped.tsv")


def assert_no_report(out):
    assert not any((out / name).exists() for name in REPORT_FILES), list(out.iterdir())


def bed(path, chrom, start, end, header=""):
    path.write_text(header + "".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(chrom, start, end)))
    return path


def h5_truth(path, observed, name="observed/counts"):
    with h5py.File(path, "w") as h5:
        h5.create_dataset(name, data=observed)
    return path


def rewrite_predictions(case, path, logits=None, logcounts=None, **coords):
    """The case's predictions with some arrays or coordinates replaced."""
    values = {"chrom": case.chrom, "start": case.start, "end": case.end, **coords}
    return write_predictions(path, case.logits if logits is None else logits,
                             case.logcounts if logcounts is None else logcounts, values["chrom"], values["start"],
                             values["end"])


def bigwigs_from(case, tmp_path, rename=None, sizes=None, observed=None, prefix="named"):
    """The case's observed counts as bigWigs with renamed chromosomes (and other sizes or values)."""
    rename = rename or {}
    observed = case.observed if observed is None else observed
    sizes = sizes or case.chrom_sizes
    paths = []
    for s in range(observed.shape[1]):
        tracks = {c: np.zeros(size) for c, size in sizes.items()}
        for i, c in enumerate(case.chrom):
            lo, hi = max(case.start[i], 0), min(case.end[i], sizes[c])
            tracks[c][lo:hi] = observed[i, s, lo - case.start[i]:hi - case.start[i]]
        paths.append(write_bigwig(tmp_path / f"{prefix}{s}.bw", {rename.get(c, c): n for c, n in sizes.items()},
                                  {rename.get(c, c): v for c, v in tracks.items()}))
    return paths


# ------------------------------------------------------------------ the bad-input matrix
def truncated_hdf5(case, tmp):
    data = case.predictions.read_bytes()
    (tmp / "cut.h5").write_bytes(data[: len(data) * 2 // 3])
    return ["score", tmp / "cut.h5", *case.bigwigs], 3, ["cut.h5", "not a readable HDF5 file"]


def missing_dataset(case, tmp):
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5["predictions/logits"] = case.logits
    return ["score", tmp / "p.h5", *case.bigwigs, "--regions", bed(tmp / "r.bed", case.chrom, case.start, case.end)], \
        3, ["no dataset 'predictions/logcounts'", "--logcounts-dataset"]


def wrong_profile_shape(case, tmp):
    rewrite_predictions(case, tmp / "p.h5", logits=case.logits[..., None])
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["has shape (40, 2, 50, 1)", "expected (N, L)"]


def logcounts_wrong_rows(case, tmp):
    rewrite_predictions(case, tmp / "p.h5", logcounts=np.zeros((39, 1), np.float32))
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["'predictions/logcounts' has shape (39, 1)", "N = 40"]


def logcounts_wrong_columns(case, tmp):
    rewrite_predictions(case, tmp / "p.h5", logcounts=np.zeros((40, 3), np.float32))
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["has 3 columns", "S = 2 tracks"]


def wrong_truth_count(case, tmp):
    return ["score", case.predictions, case.bigwigs[0]], 2, ["1 observed track(s) for 2 predicted track(s)"]


def unknown_chromosome(case, tmp):
    chrom = case.chrom.copy()
    chrom[4] = "chrUn_gl000220"
    regions = bed(tmp / "r.bed", chrom, case.start, case.end)
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, \
        ["chromosome 'chrUn_gl000220'", f"chrUn_gl000220:{case.start[4]}-{case.end[4]} (region 5)", "same genome"]


def off_end_default(case, tmp):
    start = case.start.copy()
    start[6] = case.chrom_sizes[case.chrom[6]] - 20
    regions = bed(tmp / "r.bed", case.chrom, start, start + 50)
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, \
        [f"{case.chrom[6]}:{start[6]}-{start[6] + 50} (region 7) runs off {case.chrom[6]}", "--off-end skip"]


def negative_coordinates(case, tmp):
    start = case.start.copy()
    start[2] = -10
    regions = bed(tmp / "r.bed", case.chrom, start, start + 50)
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, ["line 3", "-10-40 is not a valid interval"]


def negative_stored_start(case, tmp):
    start = case.start.copy()
    start[0] = -5
    rewrite_predictions(case, tmp / "p.h5", start=start, end=start + 50)
    return ["score", tmp / "p.h5", *case.bigwigs], 3, [f"{case.chrom[0]}:-5-45 (region 1) runs off"]


def empty_region_file(case, tmp):
    (tmp / "r.bed").write_text("# nothing here\n\n")
    return ["score", case.predictions, *case.bigwigs, "-r", tmp / "r.bed"], 3, ["holds no regions"]


def bed_header_without_hash(case, tmp):
    regions = bed(tmp / "r.bed", case.chrom, case.start, case.end, header="chrom\tstart\tend\n")
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, ["line 1", "are not integers"]


def region_count_mismatch(case, tmp):
    regions = bed(tmp / "r.bed", case.chrom[:-1], case.start[:-1], case.end[:-1])
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, ["39 regions for 40 predictions"]


def region_width_mismatch(case, tmp):
    regions = bed(tmp / "r.bed", case.chrom, case.start, case.end + 1)
    return ["score", case.predictions, *case.bigwigs, "-r", regions], 3, ["51 bp wide", "L = 50"]


def truth_n_mismatch(case, tmp):
    return ["score", case.predictions, h5_truth(tmp / "t.h5", case.observed[:30])], 3, \
        ["30 observed regions", "holds 40 predictions"]


def truth_length_mismatch(case, tmp):
    return ["score", case.predictions, h5_truth(tmp / "t.h5", case.observed[:, :, :40])], 3, \
        ["L = 40", "L = 50"]


def nan_logits(case, tmp):
    logits = case.logits.copy()
    logits[3, 1, 7] = np.nan
    rewrite_predictions(case, tmp / "p.h5", logits=logits)
    return ["score", tmp / "p.h5", *case.bigwigs], 3, \
        [f"predicted logits of {case.chrom[3]}:{case.start[3]}-{case.end[3]} (region 4) are not finite (NaN)",
         "--nonfinite skip"]


def inf_logcounts(case, tmp):
    logcounts = case.logcounts.copy()
    logcounts[11, 0] = np.inf
    rewrite_predictions(case, tmp / "p.h5", logcounts=logcounts)
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["predicted log counts", "(region 12) are not finite (inf)"]


def negative_observed(case, tmp):
    observed = case.observed.copy()
    observed[5, 0, 3] = -2.0
    return ["score", case.predictions, h5_truth(tmp / "t.h5", observed)], 3, \
        ["t.h5: observed value -2 in", "(region 6) is negative", "counts ≥ 0"]


def negative_observed_bigwig(case, tmp):
    observed = case.observed.copy()
    observed[8, 1, 0] = -1.5
    paths = bigwigs_from(case, tmp, observed=observed)
    return ["score", case.predictions, *paths], 3, ["named1.bw: observed value -1.5", "(region 9) is negative"]


def unwritable_out(case, tmp):
    (tmp / "afile").write_text("")
    return ["score", case.predictions, *case.bigwigs, "-o", tmp / "afile" / "report"], 3, \
        ["cannot write the report", "is not a directory", "--out"]


def not_a_bigwig(case, tmp):
    (tmp / "t.bw").write_text("chr1\t0\t10\t1\n" * 20)
    return ["score", case.predictions, tmp / "t.bw", case.bigwigs[1]], 3, ["t.bw: not a readable bigWig file"]


def truncated_bigwig(case, tmp):
    data = case.bigwigs[1].read_bytes()
    (tmp / "cut.bw").write_bytes(data[: len(data) // 2])
    return ["score", case.predictions, case.bigwigs[0], tmp / "cut.bw"], 3, ["cut.bw: not a readable bigWig", "truncated"]


def external_link(case, tmp):
    with h5py.File(tmp / "data.h5", "w") as h5:
        h5["logits"] = case.logits
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5["predictions/logits"] = h5py.ExternalLink(str(tmp / "data.h5"), "logits")
        h5["predictions/logcounts"] = case.logcounts
    regions = bed(tmp / "r.bed", case.chrom, case.start, case.end)
    return ["score", tmp / "p.h5", *case.bigwigs, "-r", regions], 3, \
        ["'predictions/logits' is (or links to) an external link to", "--allow-external-links"]


def soft_link_to_external_link(case, tmp):
    with h5py.File(tmp / "data.h5", "w") as h5:
        h5["counts"] = case.logcounts
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5["predictions/logits"] = case.logits
        h5["hidden/ext"] = h5py.ExternalLink(str(tmp / "data.h5"), "counts")
        h5["predictions/logcounts"] = h5py.SoftLink("/hidden/ext")
    regions = bed(tmp / "r.bed", case.chrom, case.start, case.end)
    return ["score", tmp / "p.h5", *case.bigwigs, "-r", regions], 3, ["'predictions/logcounts' is (or links to) an external link"]


def virtual_dataset(case, tmp):
    with h5py.File(tmp / "data.h5", "w") as h5:
        h5["logits"] = case.logits
    with h5py.File(tmp / "p.h5", "w") as h5:
        layout = h5py.VirtualLayout(shape=case.logits.shape, dtype=case.logits.dtype)
        layout[:] = h5py.VirtualSource(str(tmp / "data.h5"), "logits", shape=case.logits.shape)
        h5.create_virtual_dataset("predictions/logits", layout)
        h5["predictions/logcounts"] = case.logcounts
    regions = bed(tmp / "r.bed", case.chrom, case.start, case.end)
    return ["score", tmp / "p.h5", *case.bigwigs, "-r", regions], 3, ["'predictions/logits' is a virtual dataset"]


def external_storage(case, tmp):
    case.observed.astype(np.float32).tofile(tmp / "raw.bin")
    with h5py.File(tmp / "t.h5", "w") as h5:
        h5.create_dataset("observed/counts", shape=case.observed.shape, dtype=np.float32,
                          external=[(str(tmp / "raw.bin"), 0, case.observed.size * 4)])
    return ["score", case.predictions, tmp / "t.h5"], 3, ["stores its data in external file(s)", "raw.bin"]


def huge_claimed_shape(case, tmp):
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5.create_dataset("predictions/logits", shape=(10**12, 2, 50), dtype=np.float32, chunks=(1, 2, 50))
        h5.create_dataset("predictions/logcounts", shape=(10**12, 1), dtype=np.float32, chunks=(1, 1))
    return ["score", tmp / "p.h5", h5_truth(tmp / "t.h5", case.observed)], 3, \
        ["claims N = 1000000000000 regions", "damaged file can claim any shape"]


def huge_claimed_length(case, tmp):
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5.create_dataset("predictions/logits", shape=(40, 2, 10**10), dtype=np.float32, chunks=(1, 1, 1000))
        h5.create_dataset("predictions/logcounts", data=case.logcounts)
    return ["score", tmp / "p.h5", h5_truth(tmp / "t.h5", case.observed)], 3, ["L = 10000000000", "GiB"]


def never_written_dataset(case, tmp):
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5.create_dataset("predictions/logits", shape=case.logits.shape, dtype=np.float32, chunks=(4, 2, 50))
        h5["predictions/logcounts"] = case.logcounts
    return ["score", tmp / "p.h5", h5_truth(tmp / "t.h5", case.observed)], 3, ["stores no data"]


def stored_coordinates_short(case, tmp):
    rewrite_predictions(case, tmp / "p.h5", start=case.start[:-2], end=case.end[:-2])
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["'coords/coords_start' has shape (38,)", "--regions"]


def no_known_layout(case, tmp):
    with h5py.File(tmp / "p.h5", "w") as h5:
        h5["something"] = case.logits
    return ["score", tmp / "p.h5", *case.bigwigs], 3, ["no known predictions layout", "--logits-dataset"]


def missing_predictions_file(case, tmp):
    return ["score", tmp / "nope.h5", *case.bigwigs], 3, ["nope.h5: no such file"]


def cuda_without_gpu(case, tmp):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    return ["score", case.predictions, *case.bigwigs, "--device", "cuda"], 2, ["torch sees no GPU", "--device cpu"]


def bad_dtype(case, tmp):
    return ["score", case.predictions, *case.bigwigs, "--dtype", "float16"], 2, ["'--dtype'", "'float16' is not one of 'float64', 'float32'", "--help"]


def bad_policy(case, tmp):
    return ["score", case.predictions, *case.bigwigs, "--off-end", "clip"], 2, ["'--off-end'", "'clip' is not one of 'error', 'skip', 'pad'", "--help"]


def option_not_a_number(case, tmp):
    return ["score", case.predictions, *case.bigwigs, "--batch-size", "many"], 2, ["'--batch-size'", "--help"]


def unknown_option(case, tmp):
    return ["score", case.predictions, *case.bigwigs, "--frobnicate"], 2, ["--frobnicate"]


def wrong_track_names(case, tmp):
    return ["score", case.predictions, *case.bigwigs, "--track-names", "a,b,c"], 2, ["3 name(s) for 2 track(s)"]


BAD_INPUTS = [truncated_hdf5, missing_dataset, wrong_profile_shape, logcounts_wrong_rows, logcounts_wrong_columns,
              wrong_truth_count, unknown_chromosome, off_end_default, negative_coordinates, negative_stored_start,
              empty_region_file, bed_header_without_hash, region_count_mismatch, region_width_mismatch,
              truth_n_mismatch, truth_length_mismatch, nan_logits, inf_logcounts, negative_observed,
              negative_observed_bigwig, unwritable_out, not_a_bigwig, truncated_bigwig, external_link,
              soft_link_to_external_link, virtual_dataset, external_storage, huge_claimed_shape, huge_claimed_length,
              never_written_dataset, stored_coordinates_short, no_known_layout, missing_predictions_file,
              cuda_without_gpu, bad_dtype, bad_policy, option_not_a_number, unknown_option, wrong_track_names]


@pytest.fixture(scope="module")
def shared_case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("case"), n=40)


@pytest.fixture(scope="module")
def cli():
    """The installed CLI's entry point, forked per run (see tests/support/cli.py); ``run_cli`` spawns afresh."""
    runner = ForkedCli()
    yield runner.run
    runner.close()


def run_bad_input(run, case, tmp_path, build):
    args, code, fragments = build(case, tmp_path)
    out = tmp_path / "out"
    if "-o" not in args:
        args = [*args, "-o", out]
    result = run(*args, "--quiet")
    assert_one_line_error(result, code, *fragments)
    assert_no_report(out)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("build", BAD_INPUTS, ids=lambda f: f.__name__)
def test_bad_input_is_one_line_with_exit_code_and_no_report(cli, shared_case, tmp_path, build):
    run_bad_input(cli, shared_case, tmp_path, build)


@pytest.mark.slow
@pytest.mark.parametrize("build", [truncated_hdf5, option_not_a_number], ids=lambda f: f.__name__)
def test_bad_input_through_the_script_itself(shared_case, tmp_path, build):
    run_bad_input(run_cli, shared_case, tmp_path, build)


@pytest.mark.slow
@pytest.mark.parametrize("build", [truncated_hdf5, unknown_chromosome, off_end_default, nan_logits,
                                   negative_observed, virtual_dataset, huge_claimed_shape, wrong_truth_count],
                         ids=lambda f: f.__name__)
def test_check_reports_the_same_problem(cli, shared_case, tmp_path, build):
    args, code, fragments = build(shared_case, tmp_path)
    result = cli("check", *args[1:])
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    problems = result.stdout.split("problems: ", 1)[1]
    for fragment in fragments:
        assert fragment in problems


@pytest.mark.slow
def test_check_lists_every_problem_and_what_it_detected(cli, shared_case, tmp_path):
    case = shared_case
    chrom, start = case.chrom.copy(), case.start.copy()
    chrom[2] = "chrX"
    start[9] = case.chrom_sizes[chrom[9]] - 10
    regions = bed(tmp_path / "r.bed", chrom, start, start + 50)
    logits = case.logits.copy()
    logits[20, 0, 0] = np.inf
    rewrite_predictions(case, tmp_path / "p.h5", logits=logits)
    # structure problems: both bigWigs lack chrX and both see the off-end window (4 problems, values not read)
    result = cli("check", tmp_path / "p.h5", *case.bigwigs, "-r", regions)
    assert result.returncode == 3
    assert "N = 40, S = 2, L = 50" in result.stdout and "layout logits" in result.stdout
    assert f"40 regions on 3 chromosome(s): chr1 ({(chrom == 'chr1').sum()}), chr2 ({(chrom == 'chr2').sum()}), chrX (1)" \
        in result.stdout
    assert "widths: 50 bp (40)" in result.stdout
    assert "problems: 4" in result.stdout and result.stdout.count("chromosome 'chrX'") == 2
    assert result.stdout.count("(region 10) runs off") == 2
    assert "values: not read (fix the problems first)" in result.stdout
    assert "padded:" not in result.stdout and "skipped:" not in result.stdout  # errors, not policy decisions
    # with the structure fixed, the values are read and the non-finite logits found
    result = cli("check", tmp_path / "p.h5", *case.bigwigs)
    assert result.returncode == 3 and "problems: 1" in result.stdout
    assert "(region 21) are not finite (inf); 1 region(s)" in result.stdout
    assert "values: read all 40 regions" in result.stdout
    ok = cli("check", case.predictions, *case.bigwigs)
    assert ok.returncode == 0 and ok.stdout.endswith("problems: none\n") and ok.stderr == ""


# --------------------------------------------------------------------------- policies
def read_tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def column(rows, name):
    return np.array([float(r[name]) for r in rows])


def score_ok(run, *args):
    result = run("score", *args, "--quiet", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


# Small batches read by a worker process: renamed chromosomes, skipped and padded rows are read there.
IN_WORKERS = ["--batch-size", "4", "--read-workers", "1", "--read-ahead-mb", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("reading", [[], IN_WORKERS], ids=["one-batch", "worker-processes"])
def test_chr_prefix_and_mt_names_are_matched_and_reported(cli, tmp_path, reading):
    case = make_case(tmp_path, n=30)
    chrom = np.where(case.chrom == "chr2", "chrM", case.chrom)  # regions: chr1, chrM
    case.chrom_sizes = {"chr1": case.chrom_sizes["chr1"], "chrM": case.chrom_sizes["chr2"]}
    case.chrom = chrom
    bigwigs = bigwigs_from(case, tmp_path, rename={"chr1": "1", "chrM": "MT"})  # bigWigs: 1, MT
    rewrite_predictions(case, tmp_path / "p.h5")
    out = tmp_path / "out"
    result = cli("score", tmp_path / "p.h5", *bigwigs, "-o", out, *reading)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chromosome_names_mapped"] == {str(b): {"chr1": "1", "chrM": "MT"} for b in bigwigs}
    assert f"chromosome names matched to {bigwigs[0]}: chr1 → 1, chrM → MT" in result.stderr
    expected = expected_columns(case.logits, case.logcounts, case.observed)
    rows = read_tsv(out / "regions.tsv")
    assert [r["chrom"] for r in rows] == list(chrom)  # the report keeps the region names
    np.testing.assert_allclose(column(rows, "profile_mnll"), expected["profile_mnll"], rtol=1e-6)
    assert summary["n_skipped"] == 0 and summary["skipped"] == [] and summary["padded"] == []


def off_end_case(tmp_path):
    """A case whose row 6 (1-based 7) runs 20 bp past the end of its chromosome; in-bounds bases hold counts."""
    case = make_case(tmp_path, n=30)
    c = case.chrom[6]
    size = case.chrom_sizes[c]
    case.start[6], case.end[6] = size - 30, size + 20
    case.observed[6, :, 30:] = 0  # nothing can be observed past the end
    case.bigwigs = bigwigs_from(case, tmp_path)
    rewrite_predictions(case, tmp_path / "p.h5")
    return case, f"{c}:{size - 30}-{size + 20}", f"window runs off {c} (length {size}) in {case.bigwigs[0]}"


@pytest.mark.slow
@pytest.mark.parametrize("reading", [[], IN_WORKERS], ids=["one-batch", "worker-processes"])
def test_off_end_skip_lists_the_region_and_scores_the_rest(cli, tmp_path, reading):
    case, region, reason = off_end_case(tmp_path)
    out = tmp_path / "out"
    score_ok(cli, tmp_path / "p.h5", *case.bigwigs, "-o", out, "--off-end", "skip", *reading)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == [{"row": 7, "region": region, "reason": reason}] and summary["n_skipped"] == 1
    assert summary["padded"] == [] and summary["n_regions"] == 29
    assert (out / "skipped.tsv").read_text() == f"row\tregion\treason\n7\t{region}\t{reason}\n"
    rows = read_tsv(out / "regions.tsv")
    assert len(rows) == 30 and rows[6]["start"] == str(case.start[6])  # every input row, in order
    assert all(rows[6][name] == "nan" for name in rows[6] if name not in ("chrom", "start", "end"))
    expected = expected_columns(case.logits, case.logcounts, case.observed)
    keep = np.arange(30) != 6
    np.testing.assert_allclose(column(rows, "mixture_loss")[keep], expected["mixture_loss"][keep], rtol=1e-6)
    assert summary["metrics"]["mixture_loss"]["mean"] == pytest.approx(expected["mixture_loss"][keep].mean(), rel=1e-6)
    assert summary["metrics"]["mixture_loss"]["n_undefined"] == 0  # skipped rows are not "undefined"


@pytest.mark.slow
@pytest.mark.parametrize("reading", [[], IN_WORKERS], ids=["one-batch", "worker-processes"])
def test_off_end_pad_scores_zeros_past_the_end(cli, tmp_path, reading):
    case, region, reason = off_end_case(tmp_path)
    out = tmp_path / "out"
    score_ok(cli, tmp_path / "p.h5", *case.bigwigs, "-o", out, "--off-end", "pad", *reading)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["padded"] == [{"row": 7, "region": region, "reason": reason}]
    assert summary["skipped"] == [] and summary["n_regions"] == 30
    assert (out / "skipped.tsv").read_text() == "row\tregion\treason\n"
    expected = expected_columns(case.logits, case.logcounts, case.observed)  # observed[6] is zero past the end
    rows = read_tsv(out / "regions.tsv")
    assert column(rows, "observed_counts")[6] == case.observed[6].sum() > 0
    for name in ("profile_mnll", "count_log1p_mse", "mixture_loss"):
        np.testing.assert_allclose(column(rows, name), expected[name], rtol=1e-6)


@pytest.mark.slow
def test_nonfinite_skip_lists_the_regions(cli, tmp_path):
    case = make_case(tmp_path, n=30)
    logits, logcounts = case.logits.copy(), case.logcounts.copy()
    logits[2, 0, 5], logcounts[9, 0] = np.nan, -np.inf
    rewrite_predictions(case, tmp_path / "p.h5", logits=logits, logcounts=logcounts)
    out = tmp_path / "out"
    score_ok(cli, tmp_path / "p.h5", *case.bigwigs, "-o", out, "--nonfinite", "skip", "--batch-size", "4")
    summary = json.loads((out / "summary.json").read_text())
    label = lambda i: f"{case.chrom[i]}:{case.start[i]}-{case.end[i]}"  # noqa: E731
    assert summary["skipped"] == [{"row": 3, "region": label(2), "reason": "non-finite predicted logits"},
                                  {"row": 10, "region": label(9), "reason": "non-finite predicted log counts"}]
    assert (out / "skipped.tsv").read_text() == (f"row\tregion\treason\n3\t{label(2)}\tnon-finite predicted logits\n"
                                                f"10\t{label(9)}\tnon-finite predicted log counts\n")
    rows = read_tsv(out / "regions.tsv")
    keep = ~np.isin(np.arange(30), [2, 9])
    expected = expected_columns(case.logits, case.logcounts, case.observed)
    assert np.isnan(column(rows, "profile_mnll")[[2, 9]]).all()
    np.testing.assert_allclose(column(rows, "profile_mnll")[keep], expected["profile_mnll"][keep], rtol=1e-6)
    assert summary["n_regions"] == 28
    assert summary["metrics"]["profile_mnll"]["median"] == pytest.approx(np.median(expected["profile_mnll"][keep]),
                                                                         rel=1e-6)


@pytest.mark.slow
def test_non_integer_observed_warns_and_scores(cli, tmp_path):
    case = make_case(tmp_path, n=20)
    observed = case.observed * 0.37  # a CPM-like track
    out = tmp_path / "out"
    result = cli("score", case.predictions, h5_truth(tmp_path / "t.h5", observed), "-o", out)
    assert result.returncode == 0, result.stderr
    n_fractional = int((observed != np.round(observed)).any(axis=(1, 2)).sum())
    warning = (f"{n_fractional} scored region(s) have non-integer observed values; MNLL assumes counts, so a "
               "normalised track (CPM, fold change) gives MNLL values that are not comparable to counts")
    assert f"bpnet-eval: warning: {warning}" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == [warning]
    expected = expected_columns(case.logits, case.logcounts, observed)
    np.testing.assert_allclose(column(read_tsv(out / "regions.tsv"), "profile_mnll"), expected["profile_mnll"],
                               rtol=1e-6)


@pytest.mark.slow
def test_zero_count_regions_are_scored_with_mnll_zero(cli, tmp_path):
    case = make_case(tmp_path, n=20, zero_rows=(1, 7))
    out = tmp_path / "out"
    score_ok(cli, case.predictions, *case.bigwigs, "-o", out)
    rows = read_tsv(out / "regions.tsv")
    mnll = column(rows, "profile_mnll")
    assert len(rows) == 20 and mnll[1] == pytest.approx(0, abs=1e-9) and mnll[7] == pytest.approx(0, abs=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_regions"] == 20 and summary["metrics"]["profile_mnll"]["n_undefined"] == 0
    for name, stats in summary["metrics"].items():  # metrics undefined without counts are counted, not dropped
        values = column(rows, name)
        assert stats["n_undefined"] == int((~np.isfinite(values)).sum()) and stats["n"] + stats["n_undefined"] == 20


@pytest.mark.slow
def test_bed_comments_track_and_browser_lines_are_ignored(cli, tmp_path):
    case = make_case(tmp_path, n=20)
    regions = bed(tmp_path / "r.bed", case.chrom, case.start, case.end,
                  header="# made by hand\ntrack name=peaks\nbrowser position chr1:1-100\n\n")
    out = tmp_path / "out"
    score_ok(cli, case.predictions, *case.bigwigs, "-r", regions, "-o", out)
    np.testing.assert_allclose(column(read_tsv(out / "regions.tsv"), "mixture_loss"),
                               expected_columns(case.logits, case.logcounts, case.observed)["mixture_loss"], rtol=1e-6)


@pytest.mark.slow
def test_allow_external_links_reads_linked_data(cli, shared_case, tmp_path):
    args, _, _ = external_link(shared_case, tmp_path)
    out = tmp_path / "out"
    score_ok(cli, *args[1:], "-o", out, "--allow-external-links")
    expected = expected_columns(shared_case.logits, shared_case.logcounts, shared_case.observed)
    np.testing.assert_allclose(column(read_tsv(out / "regions.tsv"), "profile_mnll"), expected["profile_mnll"],
                               rtol=1e-6)


@pytest.mark.slow
def test_a_failed_rerun_leaves_the_earlier_report_as_it_was(cli, shared_case, tmp_path):
    out = tmp_path / "out"
    score_ok(cli, shared_case.predictions, *shared_case.bigwigs, "-o", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "summary.json" in before
    args, code, fragments = nan_logits(shared_case, tmp_path)
    result = cli(*args, "-o", out, "--quiet")
    assert_one_line_error(result, code, *fragments)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the report is one unit, replaced or kept


@pytest.mark.slow
def test_debug_shows_the_traceback(cli, shared_case, tmp_path):
    args, _, _ = nan_logits(shared_case, tmp_path)
    result = cli(*args, "-o", tmp_path / "out", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "InputError" in result.stderr


# ------------------------------------------------------------------------ faults, cluster
@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_summary(tmp_path):
    """A run killed after progress has started leaves --out as it was (here: an earlier report's files)."""
    n, length = 6000, 1000
    rng = np.random.default_rng(1)
    observed = np.zeros((n, 1, length), np.float32)
    observed[:, 0, ::50] = rng.poisson(2.0, size=(n, length // 50))
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        h5.create_dataset("predictions/logits", data=np.zeros((n, 1, length), np.float32), chunks=(4, 1, length),
                          compression="gzip")
        h5.create_dataset("predictions/logcounts", data=np.ones((n, 1), np.float32))
    with h5py.File(tmp_path / "t.h5", "w") as h5:
        h5.create_dataset("observed/counts", data=observed, chunks=(4, 1, length), compression="gzip")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}\n")  # an earlier report in the same directory
    (out / ".bpnet-eval-report").write_text(marker_text("report", ["summary.json"]))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([str(CLI), "score", tmp_path / "p.h5", tmp_path / "t.h5", "-o", out, "--batch-size",
                                "2", "--no-plots"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=env)
    first = process.stderr.readline()  # progress lines are plain text when stderr is a pipe
    assert first.startswith("bpnet-eval: scored ") and f"/{n} regions (" in first, first
    assert process.poll() is None, "the run finished before it could be killed; make the case larger"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (out / "regions.tsv").exists()


@pytest.mark.slow
def test_plain_progress_lines_when_stderr_is_a_pipe(shared_case, tmp_path):
    result = run_cli("score", shared_case.predictions, *shared_case.bigwigs, "-o", tmp_path / "out", "--batch-size",
                     "16", "--no-plots")
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("bpnet-eval: scored ")]
    assert progress[0].startswith("bpnet-eval: scored 16/40 regions (") and progress[-1].startswith(
        "bpnet-eval: scored 40/40 regions (")
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr  # no live bar, no escape codes


@pytest.mark.slow
def test_hdf5_opened_while_another_process_holds_a_write_lock(cli, shared_case, tmp_path):
    """Where locks are refused (here: held by a writer), the file is opened without locking."""
    holder = subprocess.Popen([str(CLI.parent / "python"), "-c",
                               "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('held', flush=True); "
                               "time.sleep(60)", str(shared_case.predictions)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OSError, match="lock"):
            h5py.File(shared_case.predictions, "r")
        for env in ({}, {"HDF5_USE_FILE_LOCKING": "FALSE"}):
            score_ok(lambda *a: cli(*a, env=env), shared_case.predictions, *shared_case.bigwigs, "-o",
                     tmp_path / f"out{len(env)}")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("environ, expected", [({"SLURM_CPUS_PER_TASK": "3"}, 3), ({"SLURM_CPUS_PER_TASK": "x"}, None),
                                               ({}, None)])
def test_allotted_cpus_follow_slurm_then_affinity(environ, expected):
    from bpnet_eval.environment import allotted_cpus

    assert allotted_cpus(environ, quota_files=()) == (expected or len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("cpu_max, expected", [("100000 100000\n", 1), ("150000 100000\n", 2),
                                               ("max 100000\n", None), ("garbage\n", None)])
def test_allotted_cpus_are_capped_by_the_cgroup_cpu_quota(tmp_path, cpu_max, expected):
    """docker run --cpus 1 writes ``100000 100000`` to cpu.max: one CPU, whatever the affinity mask says."""
    from bpnet_eval.environment import allotted_cpus

    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert allotted_cpus({}, quota_files=(str(quota),)) == (min(affinity, expected) if expected else affinity)
    assert allotted_cpus({"SLURM_CPUS_PER_TASK": "3"}, quota_files=(str(quota),)) == 3  # SLURM says first


def test_torch_threads_follow_affinity_and_slurm_unless_told():
    from bpnet_eval.environment import torch_threads

    affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(affinity)})
        assert torch_threads({}) == 1
        os.sched_setaffinity(0, affinity)
        assert torch_threads({"SLURM_CPUS_PER_TASK": "2"}) == 2
        assert torch_threads({"OMP_NUM_THREADS": "1", "SLURM_CPUS_PER_TASK": "3"}) is None
    finally:
        os.sched_setaffinity(0, affinity)


def test_caches_go_to_a_private_temp_dir_when_home_is_not_writable(tmp_path):
    from bpnet_eval.process import configure_caches

    home = tmp_path / "home"
    home.mkdir()
    environ = {"HOME": str(home)}
    assert configure_caches(environ) == {} and environ == {"HOME": str(home)}  # writable HOME: untouched
    environ = {"HOME": str(tmp_path / "missing"), "XDG_CACHE_HOME": "/somewhere"}
    chosen = configure_caches(environ)
    assert list(chosen) == ["MPLCONFIGDIR"] and environ["XDG_CACHE_HOME"] == "/somewhere"
    path = chosen["MPLCONFIGDIR"]
    assert os.path.isdir(path) and os.stat(os.path.dirname(path)).st_uid == os.getuid()
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"


@pytest.mark.slow
def test_check_shows_policy_outcomes_without_problems(cli, tmp_path):
    case, region, reason = off_end_case(tmp_path)
    renamed = bigwigs_from(case, tmp_path, rename={"chr1": "1"}, prefix="renamed")
    result = cli("check", tmp_path / "p.h5", *renamed, "--off-end", "skip")
    assert result.returncode == 0 and result.stderr == ""
    assert f"chromosome names matched in {renamed[0]}: chr1 -> 1\n" in result.stdout
    assert "skipped: 1 region(s)\n" in result.stdout and result.stdout.endswith("problems: none\n")
    padded = cli("check", tmp_path / "p.h5", *case.bigwigs, "--off-end", "pad")
    assert padded.returncode == 0 and "padded: 1 region(s)\n" in padded.stdout and "skipped:" not in padded.stdout


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--dtype", "float16"], ["--off-end", "clip"], ["--preset", "bpnet2"],
                                    ["--smooth", "all"], ["--metrics", "nope"], ["--batch-size", "0"]])
def test_a_bad_choice_exits_2_before_any_file_is_opened_or_torch_imported(tmp_path, option):
    """Choices are checked while parsing (typed) or when the options are built, before the inputs are looked at:
    the inputs here do not even exist."""
    script = ("import sys; from bpnet_eval.cli import run; "
              f"code = run(['score', 'missing.h5', 'missing.bw', *{option!r}, '--out', 'out']); "
              "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "missing" not in done.stderr



@pytest.mark.slow
def test_a_gpu_out_of_memory_is_one_line_naming_the_batch_and_the_fix(tmp_path):
    """torch's CUDA out-of-memory error (raised here by a patch on the CPU: no GPU is needed to raise it) is one line,
    exit 1, naming the regions of the batch and what to change, and no report is written."""
    case = make_case(tmp_path, n=40)
    args = ["score", str(case.predictions), *map(str, case.bigwigs), "--metrics", "all", "--device", "cpu",
            "--batch-size", "16", "--no-plots", "--out", "out"]
    script = ("import torch, bpnet_eval.compute as compute\n"
              "def full(*args, **kwargs):\n"
              "    raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a '\n"
              "                                      'total capacity of 79.19 GiB of which 1.02 GiB is free.')\n"
              "compute.mnll_per_region = full\n"
              "from bpnet_eval.cli import run\n"
              f"raise SystemExit(run({args!r}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_one_line_error(done, 1, "ran out of memory scoring regions 1..16", "(16, 2, ", "Tried to allocate 2.00 GiB",
                          "lower --batch-size, or use --device cpu")
    assert not (tmp_path / "out").exists() or assert_no_report(tmp_path / "out") is None
