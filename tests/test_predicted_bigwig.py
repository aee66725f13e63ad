"""Predictions given as counts-scale bigWigs, one per track, read over --regions.

The reference is written here in float64 numpy/scipy: the predicted values read with pyBigWig,
normalised per window (jointly over tracks, and per track), log counts ln(total) or ln(1 + total).
"""

import csv

import numpy as np
import pyBigWig
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import gammaln
from scipy.stats import pearsonr, spearmanr

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.pipeline import score
from bpnet_eval.regions import Regions
from bpnet_eval.sources.predicted_bigwig import (BigWigPredictions, bigwig_prediction_paths, check_zero_mass,
                                                 counts_to_logits)
from tests.support.cases import make_case, write_window_tracks
from tests.support.cli import run_cli


write_tracks = write_window_tracks  # per-track bigWigs holding values[i, s] over region i


def write_bed(path, case, rows=None):
    rows = range(len(case.chrom)) if rows is None else rows
    path.write_text("".join(f"{case.chrom[i]}\t{case.start[i]}\t{case.end[i]}\n" for i in rows))
    return str(path)


def predicted_values(case, seed=5, zero_fraction=0.3):
    """Counts-scale predictions: positive floats, 0 at some positions where nothing was observed."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(0.8, 2.0, size=case.observed.shape) + 1e-3
    values[(rng.random(case.observed.shape) < zero_fraction) & (case.observed == 0)] = 0
    return values


def read_back(paths, case):
    """The predicted values as stored (float32 in the file), read per window with pyBigWig."""
    out = np.zeros(case.observed.shape)
    for s, path in enumerate(paths):
        with pyBigWig.open(path) as bw:
            for i in range(len(case.chrom)):
                out[i, s] = np.nan_to_num(bw.values(case.chrom[i], int(case.start[i]), int(case.end[i]), numpy=True))
    return out


def mnll(probs, counts, axis):
    """Multinomial NLL with the lgamma terms; 0 * log 0 counts as 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(counts > 0, counts * np.log(probs), 0.0)
    return -gammaln(counts.sum(axis) + 1) + gammaln(counts + 1).sum(axis) - term.sum(axis)


def reference(values, observed, pseudocount=0.0, convention="log"):
    """Per-region columns of the report, computed independently in float64."""
    n = len(values)
    shifted = values + pseudocount
    with np.errstate(invalid="ignore"):  # an all-zero prediction: NaN here, scored only where nothing was observed
        joint = shifted.reshape(n, -1) / shifted.reshape(n, -1).sum(1, keepdims=True)
        per_track = shifted / shifted.sum(2, keepdims=True)
    total = values.sum(axis=(1, 2))
    logcounts = np.log(total) if convention == "log" else np.log(1 + total)
    observed_total = observed.sum(axis=(1, 2))
    return {"predicted_logcounts": logcounts, "observed_counts": observed_total,
            "profile_mnll": mnll(joint, observed.reshape(n, -1), 1),
            "per_track": mnll(per_track, observed, 2),
            "count_log1p_mse": (np.log(1 + observed_total) - logcounts) ** 2,
            "per_track_probs": per_track}


def check_columns(columns, ref, track_names, rtol=1e-7):
    for name in ("predicted_logcounts", "observed_counts", "profile_mnll", "count_log1p_mse"):
        np.testing.assert_allclose(columns[name], ref[name], rtol=rtol, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(columns["mixture_loss"], ref["profile_mnll"] + ref["count_log1p_mse"], rtol=rtol,
                               atol=1e-9)
    for s, name in enumerate(track_names):
        np.testing.assert_allclose(columns[f"profile_mnll_{name}"], ref["per_track"][:, s], rtol=rtol, atol=1e-9)


def test_two_tracks_match_reference_and_count_metrics(tmp_path):
    case = make_case(tmp_path, n=30, length=40)
    values = predicted_values(case)
    paths = write_tracks(tmp_path, case, values)
    stored = read_back(paths, case)
    assert (stored == 0).sum() > 50  # zero-valued predicted positions are part of the test
    result = score(paths, case.bigwigs, write_bed(tmp_path / "r.bed", case), device="cpu",
                   metrics="jsd_distance")
    ref = reference(stored, case.observed)
    check_columns(result.columns, ref, ["plus", "minus"])
    observed_target = np.log1p(case.observed.sum(axis=(1, 2)))
    counts = result.summary["counts"]
    assert counts["pearson"] == pytest.approx(pearsonr(ref["predicted_logcounts"], observed_target)[0], rel=1e-9)
    assert counts["spearman"] == pytest.approx(spearmanr(ref["predicted_logcounts"], observed_target)[0], rel=1e-9)
    assert counts["mse"] == pytest.approx(np.mean(ref["count_log1p_mse"]), rel=1e-9)
    for s, name in enumerate(["plus", "minus"]):  # a profile metric on the normalised predicted values
        column = result.columns[f"profile_jsd_distance_{name}"]
        has_counts = case.observed[:, s].sum(1) > 0
        expected = [jensenshannon(ref["per_track_probs"][i, s], case.observed[i, s]) for i in np.flatnonzero(has_counts)]
        np.testing.assert_allclose(column[has_counts], expected, rtol=1e-6, atol=1e-9)
    described = result.summary["inputs"]["predictions"]
    assert described["paths"] == paths and described["logcounts"] == "ln(total)" and described["length"] == 40


def test_one_track_log1p_convention_and_comma_string(tmp_path):
    case = make_case(tmp_path, n=20, n_tracks=1, length=30, seed=3)
    values = predicted_values(case, seed=9)
    values[4] = 0  # all zero: ln(1 + 0) = 0 in this convention
    case.observed[4] = 0
    paths = write_tracks(tmp_path, case, values)
    truth = write_tracks(tmp_path, case, case.observed, prefix="truth")  # region 5 emptied, as case.observed
    regions = Regions(case.chrom, case.start, case.end)
    result = score(",".join(paths), truth, regions, device="cpu", pred_logcounts="log1p", dtype="float64")
    ref = reference(read_back(paths, case), case.observed, convention="log1p")
    assert result.columns["predicted_logcounts"][4] == 0
    check_columns(result.columns, ref, [])
    assert "profile_mnll_track0" not in result.columns  # one track: no per-track column
    assert result.summary["inputs"]["predictions"]["logcounts"] == "ln(1 + total)"


def test_pseudocount_changes_the_profile_only(tmp_path):
    case = make_case(tmp_path, n=25, length=30, seed=4)
    values = predicted_values(case, seed=2)
    hit = np.argwhere(case.observed > 0)[:3]
    values[tuple(hit.T)] = 0  # predicted 0 where counts were observed
    paths = write_tracks(tmp_path, case, values)
    bed = write_bed(tmp_path / "r.bed", case)
    with pytest.raises(InputError) as err:
        score(paths, case.bigwigs, bed, device="cpu")
    b, s, i = (int(x) for x in hit[0])
    message = str(err.value)
    assert paths[s] in message and f"{case.chrom[b]}:{case.start[b]}-{case.end[b]} (region {b + 1})" in message
    assert f"{case.chrom[b]}:{case.start[b] + i} " in message and "--pred-pseudocount" in message
    result = score(paths, case.bigwigs, bed, device="cpu", pred_pseudocount=0.05)
    ref = reference(read_back(paths, case), case.observed, pseudocount=0.05)
    check_columns(result.columns, ref, ["plus", "minus"])
    np.testing.assert_allclose(result.columns["predicted_logcounts"], np.log(read_back(paths, case).sum((1, 2))))
    assert result.summary["inputs"]["predictions"]["pseudocount"] == 0.05


def test_check_zero_mass_is_a_pure_batch_check():
    regions = Regions(np.array(["chr1", "chr2", "chr2"], dtype=object), [100, 200, 300], [104, 204, 304])
    with np.errstate(divide="ignore"):
        logits = np.maximum(np.log(np.array([[[1.0, 0, 2, 1]], [[0, 1, 1, 1]]])), -87.4)
    observed = np.array([[[1.0, 0, 0, 0]], [[2.0, 0, 0, 0]]])
    with pytest.raises(InputError) as err:
        check_zero_mass(logits, observed, regions, 1, ["p.bw"])
    assert str(err.value).startswith("p.bw: the predicted profile of chr2:300-304 (region 3) is 0 at chr2:300 where 2")
    check_zero_mass(logits, np.array([[[0.0, 0, 3, 0]], [[0, 1, 0, 0]]]), regions, 1, ["p.bw"])  # mass where counts


def test_regions_are_required_and_of_one_width(tmp_path):
    case = make_case(tmp_path, n=6, length=20)
    paths = write_tracks(tmp_path, case, predicted_values(case))
    with pytest.raises(UsageError, match="--regions"):
        score(paths, case.bigwigs, device="cpu")
    uneven = Regions(case.chrom, case.start, case.end + np.arange(6) % 2)
    with pytest.raises(InputError, match=r"\(region 2\) is 21 bp wide .* equal width"):
        BigWigPredictions(paths, uneven)
    with pytest.raises(UsageError, match="mixes bigWig"):
        bigwig_prediction_paths("a.bw,b.h5")
    assert bigwig_prediction_paths("a.BigWig, b.BW") == ["a.BigWig", "b.BW"]
    assert bigwig_prediction_paths("preds.h5") is None


def test_zero_total_needs_log1p(tmp_path):
    case = make_case(tmp_path, n=8, length=20)
    values = predicted_values(case)
    values[1] = 0  # region 2 has no observed counts either (make_case zero_rows)
    paths = write_tracks(tmp_path, case, values)
    with pytest.raises(InputError, match=r"\(region 2\) are all 0.*--pred-logcounts log1p"):
        score(paths, case.bigwigs, write_bed(tmp_path / "r.bed", case), device="cpu")


def test_a_negative_value_among_positive_ones_is_named(tmp_path):
    case = make_case(tmp_path, n=8, length=20)
    values = predicted_values(case)
    values[5, 1, 7] = -2.5  # the minus strand's file holds positive values too: not a negated strand
    paths = write_tracks(tmp_path, case, values)
    bed = write_bed(tmp_path / "r.bed", case)
    with pytest.raises(InputError, match=r"pred.1.bw: predicted value -2.5 at position 7 of .*\(region 6\) is negative"):
        score(paths, case.bigwigs, bed, device="cpu")
    values[5, 1, 7] = 0.5  # the same files without it score
    assert np.isfinite(score(write_tracks(tmp_path, case, values), case.bigwigs, bed,
                             device="cpu").columns["profile_mnll"]).all()


def read_regions_tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.slow
def test_cli_scores_comma_separated_bigwigs(tmp_path):
    case = make_case(tmp_path, n=30, length=40, seed=6)
    paths = write_tracks(tmp_path, case, predicted_values(case, seed=8))
    bed = write_bed(tmp_path / "r.bed", case)
    ref = reference(read_back(paths, case), case.observed, convention="log1p")
    out = tmp_path / "report"
    result = run_cli("score", ",".join(paths), *case.bigwigs, "--regions", bed, "--out", out,
                     "--pred-logcounts", "log1p", "--quiet", "--no-plots", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    rows = read_regions_tsv(out / "regions.tsv")
    columns = {name: np.array([float(r[name]) for r in rows])
               for name in ("predicted_logcounts", "observed_counts", "profile_mnll", "count_log1p_mse",
                            "mixture_loss", "profile_mnll_plus", "profile_mnll_minus")}
    check_columns(columns, ref, ["plus", "minus"], rtol=1e-6)
    assert [r["chrom"] for r in rows] == list(case.chrom)


@pytest.mark.slow
def test_cli_zero_mass_error_is_one_line_and_writes_nothing(tmp_path):
    case = make_case(tmp_path, n=10, length=20, seed=7)
    values = predicted_values(case)
    b, s, i = (int(x) for x in np.argwhere(case.observed > 0)[0])
    values[b, s, i] = 0
    paths = write_tracks(tmp_path, case, values)
    out = tmp_path / "report"
    result = run_cli("score", ",".join(paths), *case.bigwigs, "--regions", write_bed(tmp_path / "r.bed", case),
                     "--out", out, "--quiet", "--no-plots", "--device", "cpu")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 3 and len(lines) == 1, result.stderr
    assert paths[s] in lines[0] and f"(region {b + 1})" in lines[0] and "--pred-pseudocount" in lines[0]
    assert not (out / "summary.json").exists() and not (out / "regions.tsv").exists()
    fixed = run_cli("score", ",".join(paths), *case.bigwigs, "--regions", tmp_path / "r.bed", "--out", out,
                    "--quiet", "--no-plots", "--device", "cpu", "--pred-pseudocount", "0.01")
    assert fixed.returncode == 0, fixed.stderr
    # check finds the same problem without scoring, and accepts the same fix
    checked = run_cli("check", ",".join(paths), *case.bigwigs, "--regions", tmp_path / "r.bed")
    assert checked.returncode == 3 and f"(region {b + 1})" in checked.stdout + checked.stderr, checked.stdout
    checked = run_cli("check", ",".join(paths), *case.bigwigs, "--regions", tmp_path / "r.bed",
                      "--pred-pseudocount", "0.01")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_cli_bigwig_predictions_without_regions(tmp_path):
    case = make_case(tmp_path, n=5, length=20)
    paths = write_tracks(tmp_path, case, predicted_values(case))
    out = tmp_path / "report"
    result = run_cli("score", ",".join(paths), *case.bigwigs, "--out", out, "--quiet", "--no-plots")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--regions" in lines[0], result.stderr
    assert not (out / "summary.json").exists()


def block_by_block(monkeypatch):
    """Files too big to keep, even where the windows lie: read block by block."""
    from bpnet_eval.sources import bigwig

    monkeypatch.setattr(bigwig, "_RESIDENT_COMPRESSED_BYTES", -1)  # not small: its fit estimated from the windows
    monkeypatch.setattr(bigwig, "_RESIDENT_MAX_BYTES", 1_000)


def test_files_read_block_by_block_are_read_ahead_by_processes(tmp_path, monkeypatch):
    """Predicted bigWigs read block by block are read by processes forked for them (each file by its own where there
    are CPUs for it), beside the scoring: the same logits and log counts as read in this process; a row read out of
    the run's order (an example region, after the run) is read by this process; the processes are gone at the
    end."""
    from bpnet_eval.inputs import open_inputs
    from bpnet_eval.options import Job
    from bpnet_eval.sources.predicted_bigwig import PredictedValues
    from bpnet_eval.workers import ProcessReadAhead
    from tests.support.processes import alive

    block_by_block(monkeypatch)
    case = make_case(tmp_path, n=60, length=40)
    paths = write_tracks(tmp_path, case, predicted_values(case))
    bed = write_bed(tmp_path / "r.bed", case)
    stored = read_back(paths, case)

    def batches(read_workers):
        with open_inputs(Job.of(paths, [str(p) for p in case.bigwigs], bed, batch_size=8,
                                read_workers=read_workers)) as inputs:
            preds = inputs.preds
            assert all(reader.reads_blocks() for reader in preds._readers)
            ahead = preds._ahead
            read = [batch[2] for batch in inputs.batches()]
            example = preds.read(5, 6)
            if read_workers:
                assert isinstance(ahead, ProcessReadAhead) and isinstance(ahead.source, PredictedValues)
                assert ahead.workers >= 1 and not ahead.is_next(5, 6)
                assert ahead._next == len(read) == 8  # every batch came from the processes
                pids = list(ahead._pids)
            else:
                assert ahead is None
                pids = []
        assert not any(alive(pid) for pid in pids) and preds._ahead is None
        return np.concatenate([r[0] for r in read]), np.concatenate([r[1] for r in read]), example

    logits, logcounts, example = batches(1)
    alone = batches(0)
    np.testing.assert_array_equal(logits, alone[0])
    np.testing.assert_array_equal(logcounts, alone[1])
    for got, want in zip(example, (logits[5:6], logcounts[5:6])):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(logcounts[:, 0], np.log(stored.sum(axis=(1, 2))), rtol=1e-12)
    positive = stored > 0
    np.testing.assert_allclose(logits[positive], np.log(stored[positive]), rtol=1e-12)
    result = score(paths, case.bigwigs, bed, device="cpu", batch_size=8, read_workers=1)
    check_columns(result.columns, reference(stored, case.observed), ["plus", "minus"])


def test_a_damaged_block_read_ahead_names_the_file(tmp_path, monkeypatch):
    """A predicted bigWig read block by block by a process reading ahead: a block that does not decompress is an
    InputError naming the file (the CLI's one line, exit 3), raised at the batch that needs it."""
    from bpnet_eval.sources.bigwig import BigWigReader

    block_by_block(monkeypatch)
    case = make_case(tmp_path, n=60, length=40)
    paths = write_tracks(tmp_path, case, predicted_values(case))
    with BigWigReader(paths[1]) as reader:
        offset, size = int(reader._block_offset[-1]), int(reader._block_size[-1])
    data = bytearray(open(paths[1], "rb").read())
    data[offset:offset + size] = b"\xff" * size  # the index still points at it; zlib cannot read it
    damaged = tmp_path / "damaged.pred.bw"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        score([paths[0], str(damaged)], case.bigwigs, write_bed(tmp_path / "r.bed", case), device="cpu",
              batch_size=8, read_workers=1)
    message = str(err.value)
    assert str(damaged) in message and "does not decompress" in message and "\n" not in message


@pytest.mark.parametrize("pseudocount", [0.0, 0.5])
def test_counts_to_logits_takes_the_logarithms_in_an_owned_copy_only(pseudocount):
    """``log(v + pseudocount)`` (0 → log of the smallest float32) in float64, the same numbers whether it copies the
    values or takes the logarithms in the caller's float64 copy; a float32 array or one not owned is left as it is."""
    values = np.array([[[0.0, 1.0, 2.5, 1e-3]], [[3.0, 0.0, 0.0, 7.0]]], dtype=np.float32)
    with np.errstate(divide="ignore"):
        want = np.maximum(np.log(values.astype(np.float64) + pseudocount), np.log(np.finfo(np.float32).tiny))
    kept = values.copy()
    np.testing.assert_array_equal(counts_to_logits(values, pseudocount, owned=True), want)
    np.testing.assert_array_equal(values, kept)  # float32: copied
    wide = values.astype(np.float64)
    np.testing.assert_array_equal(counts_to_logits(wide, pseudocount), want)
    np.testing.assert_array_equal(wide, kept)  # not owned: copied
    logits = counts_to_logits(wide, pseudocount, owned=True)
    np.testing.assert_array_equal(logits, want)
    assert np.shares_memory(logits, wide)
