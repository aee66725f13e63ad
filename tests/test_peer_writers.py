"""Every peer writer's file, written here exactly as that writer's code writes it, scored with at most the flags a
user would naturally pass.

Each ``write_*`` function below restates one writer (dataset names, shapes, dtypes, bytes vs str, chunks and
compression, bigWig calls and stitching), read from the peer's source:

- chrombpnet ``predict`` (chrombpnet/training/predict.py ``write_predictions_h5py``) and ``pred_bw``
  (chrombpnet/evaluation/make_bigwigs/predict_to_bigwig.py + bigwig_helper.py ``get_regions``, ``write_bigwig``);
- BPReveal ``makePredictions`` (src/internal/predictUtils.py ``PredictionWriter``, ``addCoordsInfo``) and
  ``predictToBigwig`` (src/predictToBigwig.py: ``logitsToProfile``, overlaps averaged, ``--negate``);
- basepairmodels ``predict`` (basepairmodels/cli/predict.py) and kundajelab bpnet 2.0 ``predict``
  (bpnet/cli/predict.py, joint two-strand softmax);
- the original BPNet ``export-bw`` (bpnet/BPNet.py ``export_bw``, ``--flip-negative-strand``);
- bpnet-lite 0.9 ``bpnet predict`` (the ``bpnet`` script: tangermeme ``extract_loci`` with ``return_mask``,
  ``numpy.savez_compressed`` of the torch outputs and of the index mask).

The expected values are computed here in float64 numpy/scipy from the model outputs the writer was given and
the observed counts (numpy arrays over the genome), over the windows rebuilt from the writer's rules; where a
writer stitches windows into a bigWig, from the per-base values it wrote.
"""

import gzip
import json

import h5py
import numpy as np
import pyBigWig
import pytest
import torch
from scipy.special import logsumexp, softmax

from tests.support.cases import write_bigwig
from tests.support.checks import numbers, read_columns
from tests.support.cli import ForkedCli
from tests.support.reference import expected_columns

pytestmark = pytest.mark.slow

GENOME = {"chr1": 9000, "chr2": 7000, "chr8": 5000}  # chr8: a chromosome a --chroms filter leaves out
L = 40


@pytest.fixture(scope="module")
def cli():
    runner = ForkedCli()
    yield runner
    runner.close()


def observed_genome(seed: int, n_tracks: int) -> dict:
    """Sparse integer counts along every chromosome, ``{chrom: (S, size)}``."""
    rng = np.random.default_rng(seed)
    return {c: rng.poisson(rng.gamma(0.2, 3.0, size=(n_tracks, size))).astype(np.float64) for c, size in GENOME.items()}


def windows(genome: dict, chrom, start) -> np.ndarray:
    """Observed counts ``(N, S, L)`` of the windows ``start .. start + L``."""
    return np.stack([genome[c][:, s:s + L] for c, s in zip(chrom, start)])


def truth_bigwigs(tmp_path, genome: dict, negate_minus: bool = False) -> list:
    """One observed bigWig per track (the minus strand written negated, as PRO-seq pipelines do, on request)."""
    n_tracks = next(iter(genome.values())).shape[0]
    paths = []
    for s in range(n_tracks):
        sign = -1.0 if negate_minus and s == 1 else 1.0
        paths.append(str(write_bigwig(tmp_path / f"observed.{s}.bw", GENOME,
                                      {c: sign * values[s] for c, values in genome.items()})))
    return paths


def peak_loci(seed: int, n: int, chroms=("chr1", "chr2"), margin: int = 2 * L):
    """``n`` loci well inside their chromosomes: chrom, start, end (widths vary) and a summit offset."""
    rng = np.random.default_rng(seed)
    chrom = rng.choice(list(chroms), size=n)
    start = np.array([rng.integers(margin, GENOME[c] - margin - 300) for c in chrom])
    end = start + rng.integers(20, 200, size=n)
    summit = np.array([rng.integers(0, e - s + 1) for s, e in zip(start, end)])
    return chrom, start, end, summit


def narrowpeak_text(chrom, start, end, summit) -> str:
    return "".join(f"{c}\t{s}\t{e}\tpeak_{k}\t500\t.\t8.1\t12.3\t10.2\t{p}\n"
                   for k, (c, s, e, p) in enumerate(zip(chrom, start, end, summit)))


def model_outputs(seed: int, shape, per_track_counts: bool = False, n_tracks: int = 1):
    """A model's float32 profile logits and log counts."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=shape).astype(np.float32)
    counts_shape = (shape[0], n_tracks) if per_track_counts else (shape[0], 1)
    return logits, rng.normal(3.0, 1.5, size=counts_shape).astype(np.float32)


def score(cli, tmp_path, *args) -> tuple:
    """Run ``bpnet-eval score`` and return ``(regions.tsv columns, stderr)``; every convention the run used is
    named in summary.json settings (``conventions(tmp_path)``)."""
    out = tmp_path / "report"
    result = cli.run("score", *args, "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "input_conventions" in (out / "report.html").read_text()
    return read_columns(out / "regions.tsv"), result.stderr


def conventions(tmp_path) -> dict:
    """``settings.input_conventions`` of the report ``score`` wrote."""
    return json.loads((tmp_path / "report" / "summary.json").read_text())["settings"]["input_conventions"]


def assert_matches(columns, expected, tracks=("plus", "minus"), rtol=1e-9):
    """The report's per-region columns equal the float64 reference."""
    for name in ("observed_counts", "profile_mnll", "count_log1p_mse", "mixture_loss"):
        np.testing.assert_allclose(numbers(columns, name), expected[name], rtol=rtol, atol=1e-8, err_msg=name)
    if len(tracks) > 1:
        for s, track in enumerate(tracks):
            np.testing.assert_allclose(numbers(columns, f"profile_mnll_{track}"), expected["per_track"][:, s],
                                       rtol=rtol, atol=1e-8, err_msg=track)


def overlapping(chrom, start) -> tuple:
    """``(touching, n_later)``: per window whether another window of length L overlaps it, and how many windows
    start inside an earlier one in genome order (pairwise, in numpy)."""
    chrom, start = np.asarray(chrom, dtype=str), np.asarray(start)
    n = len(start)
    touching = (chrom[:, None] == chrom[None, :]) & (np.abs(start[:, None] - start[None, :]) < L) & ~np.eye(n, dtype=bool)
    earlier = (start[None, :] < start[:, None]) | ((start[None, :] == start[:, None])
                                                   & (np.arange(n)[None, :] < np.arange(n)[:, None]))
    return touching.any(axis=1), int((touching & earlier).any(axis=1).sum())


def assert_overlap_note(stderr, chrom, start, writer):
    """One note counting the windows that start inside an earlier one, naming the writer's stitching."""
    _, n_later = overlapping(chrom, start)
    assert n_later >= 1
    notes = [line for line in stderr.splitlines() if "overlap an earlier one" in line]
    assert len(notes) == 1 and f": {n_later} of {len(start)} windows" in notes[0] and writer in notes[0], notes


def assert_windows(columns, chrom, start):
    assert columns["chrom"] == [str(c) for c in chrom]
    np.testing.assert_array_equal(numbers(columns, "start"), start)
    np.testing.assert_array_equal(numbers(columns, "end"), np.asarray(start) + L)


# ------------------------------------------------------------------------------------------------ chrombpnet
def chrombpnet_softmax(x, temp=1):
    norm_x = x - np.mean(x, axis=1, keepdims=True)
    return np.exp(temp * norm_x) / np.sum(np.exp(temp * norm_x), axis=1, keepdims=True)


def chrombpnet_write_predictions_h5py(output_prefix, profile, logcts, coords):
    """chrombpnet/training/predict.py, as written there."""
    output_h5_fname = "{}_predictions.h5".format(output_prefix)
    h5_file = h5py.File(output_h5_fname, "w")
    coord_group = h5_file.create_group("coords")
    pred_group = h5_file.create_group("predictions")
    num_examples = len(coords)
    coords_chrom_dset = [str(coords[i][0]) for i in range(num_examples)]
    coords_center_dset = [int(coords[i][1]) for i in range(num_examples)]
    coords_peak_dset = [int(coords[i][3]) for i in range(num_examples)]
    dt = h5py.special_dtype(vlen=str)
    coord_group.create_dataset("coords_chrom", data=np.array(coords_chrom_dset, dtype=dt), dtype=dt, compression="gzip")
    coord_group.create_dataset("coords_center", data=coords_center_dset, dtype=int, compression="gzip")
    coord_group.create_dataset("coords_peak", data=coords_peak_dset, dtype=int, compression="gzip")
    pred_group.create_dataset("profs", data=profile, dtype=float, compression="gzip")
    pred_group.create_dataset("logcounts", data=logcts, dtype=float, compression="gzip")
    h5_file.close()
    return output_h5_fname


def test_chrombpnet_predict_h5(cli, tmp_path):
    genome = observed_genome(1, 1)
    chrom, start, end, summit = peak_loci(2, 30)
    center = start + summit
    peak = (np.arange(30) % 3 != 0).astype(int)
    logits, logcounts = model_outputs(3, (30, L))
    # predict_on_batch_wrapper: softmax of the (N, L) logits, counts preds[1][:, 0], coordinates as an array
    # of [chrom, start + summit, "f", peak] rows (numpy turns them into strings)
    coordinates = np.array([[c, m, "f", p] for c, m, p in zip(chrom, center, peak)])
    profs = chrombpnet_softmax(logits)
    path = chrombpnet_write_predictions_h5py(str(tmp_path / "chrombpnet"), profs, logcounts[:, 0], coordinates)
    truth = truth_bigwigs(tmp_path, genome)
    columns, _ = score(cli, tmp_path, path, *truth)
    window_start = center - L // 2  # chrombpnet get_cts: start + summit - width//2 .. + width//2
    assert_windows(columns, chrom, window_start)
    stored = np.asarray(profs, dtype=np.float64)  # the probabilities as stored (float64)
    expected = expected_columns(np.log(stored)[:, None, :], logcounts.astype(np.float64), windows(genome, chrom, window_start))
    assert_matches(columns, expected, tracks=())
    named = conventions(tmp_path)
    assert named["predicted_profile"] == "probs" and "coords_center" in named["windows"]


def read_tsv_rows(path):
    """The tab-separated rows of a (possibly gzipped) text file, as pandas.read_csv(sep="\\t", header=None) reads
    these files (no header, no comments)."""
    data = open(path, "rb").read()
    text = gzip.decompress(data).decode() if data[:2] == b"\x1f\x8b" else data.decode()
    return [line.split("\t") for line in text.splitlines() if line]


def chrombpnet_get_regions(regions_file, seqlen, regions_used=None):
    """chrombpnet bigwig_helper.get_regions."""
    rows = read_tsv_rows(regions_file)
    rows = rows if regions_used is None else [r for r, used in zip(rows, regions_used) if used]
    return [[x[0], int(x[1]) + int(x[9]) - seqlen // 2, int(x[1]) + int(x[9]) + seqlen // 2, int(x[1]) + int(x[9])]
            for x in rows]


def chrombpnet_write_bigwig(data, regions, gs, bw_out, written):
    """chrombpnet bigwig_helper.write_bigwig: windows in genome order, overlapping ones cut at the midpoint between
    their summits; ``written[chrom]`` receives the values written (float32, as the bigWig stores them)."""
    chr_to_idx = {x[0]: i for i, x in enumerate(gs)}
    bw = pyBigWig.open(bw_out, "w")
    bw.addHeader(gs)
    order_of_regs = sorted(range(len(regions)), key=lambda x: (chr_to_idx[regions[x][0]], regions[x][1]))
    cur_chr, cur_end = "", 0
    for itr in range(len(order_of_regs)):
        i = order_of_regs[itr]
        i_chr, i_start, i_end, i_mid = regions[i]
        if i_chr != cur_chr:
            cur_chr, cur_end = i_chr, 0
        if cur_end < i_start:
            cur_end = i_start
        assert regions[i][2] >= cur_end
        next_end = i_end
        if itr + 1 != len(order_of_regs):
            n = order_of_regs[itr + 1]
            next_chr, next_start, _, next_mid = regions[n]
            if next_chr == i_chr and next_start < i_end:
                next_end = (i_mid + next_mid) // 2
        vals = data[i][cur_end - i_start:next_end - i_start]
        bw.addEntries([i_chr] * (next_end - cur_end), list(range(cur_end, next_end)),
                      ends=list(range(cur_end + 1, next_end + 1)), values=[float(x) for x in vals])
        written[i_chr][cur_end:next_end] = np.float32(vals)
        cur_end = next_end
    bw.close()


def test_chrombpnet_pred_bw_over_narrowpeak_with_stitched_overlaps(cli, tmp_path):
    genome = observed_genome(4, 1)
    chrom, start, end, summit = peak_loci(5, 24)
    chrom[:4], start[:4], end[:4], summit[:4] = "chr1", [500, 520, 540, 2000], [600, 600, 700, 2100], [10, 5, 30, 50]
    peaks = tmp_path / "peaks.narrowPeak"
    peaks.write_text(narrowpeak_text(chrom, start, end, summit))
    (tmp_path / "chrom.sizes").write_text("".join(f"{c}\t{s}\n" for c, s in GENOME.items()))
    gs = [(c, int(s)) for c, s in (line.split("\t") for line in (tmp_path / "chrom.sizes").read_text().splitlines())]
    logits, logcounts = model_outputs(6, (24, L))
    regions = chrombpnet_get_regions(str(peaks), L, np.ones(24, dtype=bool))
    written = {c: np.zeros(size, dtype=np.float32) for c, size in GENOME.items()}
    predicted = tmp_path / "prefix_chrombpnet.bw"
    chrombpnet_write_bigwig(chrombpnet_softmax(logits) * np.expand_dims(np.exp(logcounts)[:, 0], axis=1), regions, gs,
                            str(predicted), written)
    truth = truth_bigwigs(tmp_path, genome)
    columns, stderr = score(cli, tmp_path, predicted, *truth, "--regions", peaks, "--length", L)
    window_start = start + summit - L // 2
    assert_windows(columns, chrom, window_start)
    values = np.stack([written[c][s:s + L] for c, s in zip(chrom, window_start)]).astype(np.float64)
    total = values.sum(axis=1)
    expected = expected_columns(np.log(values)[:, None, :], np.log(total)[:, None], windows(genome, chrom, window_start))
    assert_matches(columns, expected, tracks=())
    assert_overlap_note(stderr, chrom, window_start, "nearer summit")
    touching, _ = overlapping(chrom, window_start)
    # away from overlaps the stitched track is the model's own prediction: ln(total) is its log count
    named = conventions(tmp_path)
    assert named["overlapping_windows"] >= 1 and "narrowPeak (start + summit ± L/2)" in named["windows"]
    alone = ~touching
    np.testing.assert_allclose(np.log(total[alone]), logcounts[alone, 0], rtol=1e-5)
    assert not np.allclose(np.log(total[~alone]), logcounts[~alone, 0], rtol=1e-5)


# -------------------------------------------------------------------------------------------------- BPReveal
def bpreveal_write_predictions(path, chrom, start, stop, logits_nls, logcounts, chunk=100):
    """BPReveal PredictionWriter with addCoordsInfo (bed given): chrom_names/chrom_sizes, coords_* as uint8/uint32,
    head_0/logits (N, L, S) float32 and head_0/logcounts (N,) float32 chunked by 100 and written in commits of 100,
    then descriptions."""
    names = list(GENOME)
    with h5py.File(path, "w") as fp:
        string = h5py.string_dtype(encoding="utf-8")
        fp.create_dataset("chrom_names", (len(names),), dtype=string)
        fp.create_dataset("chrom_sizes", (len(names),), dtype="u8")
        for i, name in enumerate(names):
            fp["chrom_names"][i] = name
            fp["chrom_sizes"][i] = GENOME[name]
        fp.create_dataset("coords_chrom", dtype=np.uint8, data=[names.index(c) for c in chrom])
        fp.create_dataset("coords_start", dtype=np.uint32, data=list(start))
        fp.create_dataset("coords_stop", dtype=np.uint32, data=list(stop))
        n = len(chrom)
        head = fp.create_group("head_0")
        head.create_dataset("logcounts", (n,), dtype=np.float32, chunks=(min(chunk, n),))
        head.create_dataset("logits", (n,) + logits_nls.shape[1:], dtype=np.float32,
                            chunks=(min(chunk, n),) + logits_nls.shape[1:])
        for i in range(0, n, chunk):
            head["logits"][i:i + chunk] = logits_nls[i:i + chunk]
            head["logcounts"][i:i + chunk] = logcounts[i:i + chunk]
        fp.create_dataset("descriptions", dtype=string, data=[f"{c}:{s}" for c, s in zip(chrom, start)])


def bpreveal_vector_to_inserts(data_vector):
    """BPReveal predictToBigwig.vectorToListOfInserts, as written there."""
    rets, region_start, last_point = [], 0, -1
    poses = np.nonzero(data_vector)[0]
    for pos in poses:
        if pos != last_point + 1:
            if last_point > 0:
                rets.append((data_vector[region_start:last_point + 1], region_start))
            region_start = pos
        last_point = pos
    rets.append((data_vector[region_start:poses[-1] + 1], region_start))
    return rets


def bpreveal_predict_to_bigwig(h5_path, out_path, task, negate, written):
    """BPReveal predictToBigwig --mode profile: logitsToProfile (softmax over every position and task of the head,
    times exp(logcounts), float32), overlapping regions averaged, runs of non-zero values written, negated with
    --negate; ``written[chrom]`` receives the per-base values written."""
    with h5py.File(h5_path, "r") as h5:
        header = [(str(name), int(h5["chrom_sizes"][i])) for i, name in enumerate(h5["chrom_names"].asstr())]
        chrom_idx, starts, stops = h5["coords_chrom"][()], h5["coords_start"][()], h5["coords_stop"][()]
        logits, logcounts = h5["head_0/logits"][()], h5["head_0/logcounts"][()]
        bw = pyBigWig.open(str(out_path), "w")
        bw.addHeader(header)
        order = sorted(range(len(chrom_idx)), key=lambda x: (chrom_idx[x], starts[x]))
        for c in sorted(set(chrom_idx.tolist())):
            size = int(h5["chrom_sizes"][c])
            counts, values = np.zeros(size, dtype=np.uint16), np.zeros(size, dtype=np.float32)
            for k in (k for k in order if chrom_idx[k] == c):
                profile = (softmax(logits[k]) * np.exp(logcounts[k])).astype(np.float32)
                counts[starts[k]:stops[k]] += 1
                values[starts[k]:stops[k]] += profile[:, task]
            counts[counts == 0] = 1
            vector = values / counts
            name = h5["chrom_names"][c].decode("utf-8")
            for insert, begin in bpreveal_vector_to_inserts(vector):
                if negate:
                    insert *= -1
                bw.addEntries(name, int(begin), values=[float(x) for x in insert], span=1, step=1)
                written[name][begin:begin + len(insert)] = np.abs(np.float32(insert))
        bw.close()


def bpreveal_case(tmp_path, seed):
    genome = observed_genome(seed, 2)
    chrom, start, _, _ = peak_loci(seed + 1, 28)
    start[:2] = [3000, 3010]  # an overlapping pair: predictToBigwig averages them
    chrom[:2] = "chr2"
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"{c}\t{s}\t{s + L}\n" for c, s in zip(chrom, start)))
    logits, logcounts = model_outputs(seed + 2, (28, L, 2))
    h5 = tmp_path / "predictions.h5"
    bpreveal_write_predictions(h5, chrom, start, start + L, logits, logcounts[:, 0])
    return genome, chrom, start, bed, logits, logcounts, h5


def test_bpreveal_make_predictions_h5(cli, tmp_path):
    genome, chrom, start, _, logits, logcounts, h5 = bpreveal_case(tmp_path, 10)
    columns, _ = score(cli, tmp_path, h5, *truth_bigwigs(tmp_path, genome))
    assert_windows(columns, chrom, start)
    expected = expected_columns(np.swapaxes(logits, 1, 2), logcounts, windows(genome, chrom, start))
    assert_matches(columns, expected)


@pytest.mark.parametrize("negate", [False, True])
def test_bpreveal_predict_to_bigwig(cli, tmp_path, negate):
    genome, chrom, start, bed, _, _, h5 = bpreveal_case(tmp_path, 20)
    written = [{c: np.zeros(size, dtype=np.float32) for c, size in GENOME.items()} for _ in range(2)]
    predicted = [tmp_path / "pred.plus.bw", tmp_path / "pred.minus.bw"]
    for task, path in enumerate(predicted):  # one predictToBigwig run per task, --negate for the minus strand
        bpreveal_predict_to_bigwig(h5, path, task, negate and task == 1, written[task])
    columns, stderr = score(cli, tmp_path, f"{predicted[0]},{predicted[1]}", *truth_bigwigs(tmp_path, genome),
                            "--regions", bed)
    assert_windows(columns, chrom, start)
    values = np.stack([np.stack([written[0][c][s:s + L], written[1][c][s:s + L]]) for c, s in zip(chrom, start)])
    values = values.astype(np.float64)
    expected = expected_columns(np.log(values), np.log(values.sum(axis=(1, 2)))[:, None], windows(genome, chrom, start))
    assert_matches(columns, expected)
    assert ("read as magnitudes" in stderr) == negate
    assert conventions(tmp_path).get("read_as_magnitudes", []) == ([str(predicted[1])] if negate else [])
    assert_overlap_note(stderr, chrom, start, "their mean")


# ---------------------------------------------------------------------------- basepairmodels and bpnet 2.0
def basepairmodels_write(path, chrom, pos, output_len, window, logits, logcounts, true_profiles, joint=False):
    """basepairmodels predict (``joint=False``) or kundajelab bpnet 2.0 predict without --orig-multi-loss
    (``joint=True``): coords of the output_len window, the middle ``window`` (--output-window-size) of the profile
    in counts scale, per-track log counts, and the observed profiles, all float64 gzip, as the writer builds them."""
    n, _, n_tracks = logits.shape
    with h5py.File(path, "w") as h5_file:
        coord_group, pred_group = h5_file.create_group("coords"), h5_file.create_group("predictions")
        chrom_dset = coord_group.create_dataset("coords_chrom", (n,), dtype=h5py.string_dtype(encoding="utf-8"),
                                                compression="gzip")
        start_dset = coord_group.create_dataset("coords_start", (n,), dtype=int, compression="gzip")
        end_dset = coord_group.create_dataset("coords_end", (n,), dtype=int, compression="gzip")
        profs = pred_group.create_dataset("pred_profs", (n, window, n_tracks), dtype=float, compression="gzip")
        counts = pred_group.create_dataset("pred_logcounts", (n, n_tracks), dtype=float, compression="gzip")
        true_profs = pred_group.create_dataset("true_profs", (n, window, n_tracks), dtype=float, compression="gzip")
        true_counts = pred_group.create_dataset("true_logcounts", (n, n_tracks), dtype=float, compression="gzip")
        _start = output_len // 2 - window // 2
        _end = _start + window
        all_profiles, all_logcounts = np.zeros((n, window, n_tracks)), np.zeros((n, n_tracks))
        for idx in range(n):
            if joint:
                flat = np.reshape(logits[idx], [1, output_len * 2])
                predictions = np.exp(flat - logsumexp(flat)) * np.exp(logcounts[idx])
                for j in range(n_tracks):
                    all_profiles[idx, :, j] = np.reshape(predictions, [output_len, 2])[_start:_end, j]
                    all_logcounts[idx, j] = np.log(np.sum(np.reshape(predictions, [output_len, 2])[:, j]))
            else:
                for j in range(n_tracks):
                    all_logcounts[idx, j] = logcounts[idx, j]
                    z = logits[idx, _start:_end, j]
                    all_profiles[idx, :, j] = np.exp(z - logsumexp(z)) * (np.exp(logcounts[idx, j]) - 1)
        profs[:, :, :] = all_profiles
        counts[:, :] = all_logcounts
        true_profs[:, :, :] = true_profiles[:, _start:_end, :]
        true_counts[:, :] = np.log(true_profiles.sum(axis=1) + 1)
        # the batch generator's coordinates: pos ± output_len // 2, as strings turned back to int
        chrom_dset[:] = [str(c) for c in chrom]
        start_dset[:] = [int(p) - output_len // 2 for p in pos]
        end_dset[:] = [int(p) + output_len // 2 for p in pos]
    return all_profiles, all_logcounts


@pytest.mark.parametrize("truth", ["same file", "bigwigs"])
def test_basepairmodels_predict_with_a_narrower_output_window(cli, tmp_path, truth):
    genome = observed_genome(30, 2)
    output_len = L + 16  # --output-len 56, --output-window-size 40
    chrom, start, _, _ = peak_loci(31, 26)
    pos = start + output_len // 2
    logits, logcounts = model_outputs(32, (26, output_len, 2), per_track_counts=True, n_tracks=2)
    logcounts[:4, 1] = [-0.5, -2.0, -0.01, -1.2]  # e^c - 1 < 0: negative counts-scale profiles
    observed_full = np.stack([genome[c][:, p - output_len // 2:p + output_len // 2].T for c, p in zip(chrom, pos)])
    profiles, _ = basepairmodels_write(tmp_path / "model_predictions.h5", chrom, pos, output_len, L, logits, logcounts,
                                       observed_full)
    assert (profiles[:4, :, 1] < 0).all()
    truth_args = [tmp_path / "model_predictions.h5"] if truth == "same file" else truth_bigwigs(tmp_path, genome)
    columns, stderr = score(cli, tmp_path, tmp_path / "model_predictions.h5", *truth_args)
    window_start = pos - output_len // 2 + output_len // 2 - L // 2  # basepairmodels _start = len//2 - window//2
    assert_windows(columns, chrom, window_start)
    cropped = logits[:, output_len // 2 - L // 2:output_len // 2 - L // 2 + L, :]
    observed = windows(genome, chrom, window_start)
    expected = expected_columns(np.log(np.abs(np.swapaxes(profiles, 1, 2))), logcounts, observed)
    assert_matches(columns, expected)
    # v/Σv is the model's distribution softmax(z) (to the float32 precision the writer's softmax has)
    per_track = expected_columns(np.swapaxes(cropped, 1, 2), logcounts, observed)["per_track"]
    np.testing.assert_allclose(numbers(columns, "profile_mnll_minus"), per_track[:, 1], rtol=1e-6)
    assert "scored over the middle 40 bp" in stderr
    assert "centre-cropped from 56 bp to L = 40" in conventions(tmp_path)["windows"]


def test_bpnet2_predict_joint_strands(cli, tmp_path):
    genome = observed_genome(40, 2)
    chrom, start, _, _ = peak_loci(41, 22)
    pos = start + L // 2
    logits, logcounts = model_outputs(42, (22, L, 2))
    observed_full = np.stack([genome[c][:, p - L // 2:p + L // 2].T for c, p in zip(chrom, pos)])
    profiles, strand_logcounts = basepairmodels_write(tmp_path / "model_predictions.h5", chrom, pos, L, L, logits,
                                                     logcounts, observed_full, joint=True)
    columns, _ = score(cli, tmp_path, tmp_path / "model_predictions.h5", tmp_path / "model_predictions.h5")
    assert_windows(columns, chrom, start)
    expected = expected_columns(np.log(np.swapaxes(profiles, 1, 2)), strand_logcounts, windows(genome, chrom, start))
    assert_matches(columns, expected)
    # the stored counts-scale profile is the model's joint two-strand distribution (to float32 precision)
    joint = expected_columns(np.swapaxes(logits, 1, 2), strand_logcounts, windows(genome, chrom, start))
    np.testing.assert_allclose(numbers(columns, "profile_mnll"), joint["profile_mnll"], rtol=1e-6)
    # the per-strand log counts add up to the model's one: ln(sum of e^c_s) = c
    np.testing.assert_allclose(logsumexp(strand_logcounts, axis=1), logcounts[:, 0], rtol=1e-6)


# --------------------------------------------------------------------------------- original BPNet export-bw
def bpnet_export_bw(output_prefix, task, regions, preds, fasta_lengths, flip_negative_strand, written):
    """bpnet/BPNet.py export_bw (two strands): genome header with the regions' chromosomes first, regions sorted,
    per-base entries with ``addEntries(chrom, start, values=arr, span=1, step=1)``, overlapping parts written once
    (the earlier window's), the negative strand times -1 with --flip-negative-strand."""
    first_chr = list(np.unique(np.array([r[0] for r in regions])))
    last_chr = [c for c in fasta_lengths if c not in first_chr]
    genome = [(c, fasta_lengths[c]) for c in first_chr + last_chr]
    bws = {}
    for feat in ("preds.pos", "preds.neg"):
        bws[feat] = pyBigWig.open(f"{output_prefix}.{task}.{feat}.bw", "w")
        bws[feat].addHeader(genome)

    def add_entry(bw, arr, interval, start_idx=0, target=None):
        assert arr.ndim == 1 and start_idx < len(arr)
        bw.addEntries(interval[0], interval[1] + start_idx, values=arr[start_idx:], span=1, step=1)
        target[interval[0]][interval[1] + start_idx:interval[2]] = np.abs(np.float32(arr[start_idx:]))

    prev_stop, prev_chrom = None, None
    for i in range(len(regions)):
        interval = regions[i]
        if prev_chrom != interval[0]:
            prev_stop, prev_chrom = 0, interval[0]
        if prev_stop >= interval[2]:
            continue
        start_idx = max(prev_stop - interval[1], 0)
        add_entry(bws["preds.pos"], preds[i][:, 0], interval, start_idx, written[0])
        negative = preds[i][:, 1] * -1 if flip_negative_strand else preds[i][:, 1]
        add_entry(bws["preds.neg"], negative, interval, start_idx, written[1])
        prev_stop = max(interval[2], prev_stop)
    for bw in bws.values():
        bw.close()
    return [f"{output_prefix}.{task}.{feat}.bw" for feat in ("preds.pos", "preds.neg")]


@pytest.mark.parametrize("flip", [False, True])
def test_bpnet_export_bw(cli, tmp_path, flip):
    genome = observed_genome(50, 2)
    chrom, start, _, _ = peak_loci(51, 20)
    chrom[:2], start[:2] = "chr2", [1500, 1525]  # overlapping: the later window's overlap keeps the earlier values
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"{c}\t{s}\t{s + L}\n" for c, s in zip(chrom, start)))
    logits, logcounts = model_outputs(52, (20, L, 2), per_track_counts=True, n_tracks=2)
    # BPNet.predict: the per-strand softmax profile times exp(counts) of that strand
    preds = softmax(logits, axis=1).astype(np.float32) * np.exp(logcounts)[:, np.newaxis, :]
    order = sorted(range(20), key=lambda i: (chrom[i], start[i]))  # BedTool(regions).sort()
    regions = [(chrom[i], int(start[i]), int(start[i]) + L) for i in order]
    written = [{c: np.zeros(size, dtype=np.float32) for c, size in GENOME.items()} for _ in range(2)]
    paths = bpnet_export_bw(str(tmp_path / "model"), "Nanog", regions, preds[order], dict(GENOME), flip, written)
    columns, stderr = score(cli, tmp_path, ",".join(paths), *truth_bigwigs(tmp_path, genome), "--regions", bed)
    assert_windows(columns, chrom, start)
    values = np.stack([np.stack([written[0][c][s:s + L], written[1][c][s:s + L]]) for c, s in zip(chrom, start)])
    values = values.astype(np.float64)
    expected = expected_columns(np.log(values), np.log(values.sum(axis=(1, 2)))[:, None], windows(genome, chrom, start))
    assert_matches(columns, expected)
    assert ("read as magnitudes" in stderr) == flip
    assert_overlap_note(stderr, chrom, start, "the first window")


# ------------------------------------------------------------------------------------------ bpnet-lite 0.9
def tangermeme_interleave(loci_files, chroms):
    """tangermeme _interleave_loci (0.2.3-0.4): columns 0-2 of each file, filtered by chromosome, row k of file i
    at k * n_files + i, sorted by that index."""
    keyed = []
    for i, path in enumerate(loci_files):
        rows = [(r[0], int(r[1]), int(r[2])) for r in read_tsv_rows(path) if r[0] in chroms]
        keyed += [(k * len(loci_files) + i, row) for k, row in enumerate(rows)]
    return [row for _, row in sorted(keyed)]


def tangermeme_windows(loci, in_window, out_window):
    """extract_loci with max_jitter 0: the kept mask (windows inside the chromosome) and the output windows."""
    kept, starts, chroms = [], [], []
    in_width, out_width = in_window // 2, out_window // 2
    for chrom, start, end in loci:
        mid = start + (end - start) // 2
        if mid - max(out_width, in_width) < 0 or mid + max(out_width, in_width) > GENOME[str(chrom)]:
            kept.append(False)
            continue
        kept.append(True)
        chroms.append(chrom)
        starts.append(mid - out_width)
    return np.array(kept), np.array(chroms, dtype=object), np.array(starts)


@pytest.mark.parametrize("order", ["as written", "counts first"])
def test_bpnet_lite_predict_with_its_loci_and_mask(cli, tmp_path, order):
    genome = observed_genome(60, 2)
    chrom, start, end, summit = peak_loci(61, 18, chroms=("chr1", "chr2", "chr8"), margin=10)
    start[:2], end[:2], chrom[:2] = [5, 8950], [45, 8990], "chr1"  # near the ends: masked out (in_window 2L)
    peaks = tmp_path / "peaks.narrowPeak.gz"
    peaks.write_bytes(gzip.compress(narrowpeak_text(chrom, start, end, summit).encode()))
    n_chrom, n_start, n_end, _ = peak_loci(62, 11, chroms=("chr1", "chr2", "chr8"))
    negatives = tmp_path / "negatives.bed"
    negatives.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(n_chrom, n_start, n_end)))
    loci = tangermeme_interleave([str(peaks), str(negatives)], ["chr1", "chr2"])
    kept, w_chrom, w_start = tangermeme_windows(loci, 2 * L, L)
    assert not kept.all() and kept.sum() > 10
    logits, logcounts = model_outputs(63, (int(kept.sum()), 2, L))
    np.savez_compressed(tmp_path / "predictions.profile.npz", torch.from_numpy(logits))
    np.savez_compressed(tmp_path / "predictions.counts.npz", torch.from_numpy(logcounts))
    np.savez_compressed(tmp_path / "predictions.idx.npy", torch.tensor(kept.tolist()))  # → predictions.idx.npy.npz
    files = [tmp_path / "predictions.profile.npz", tmp_path / "predictions.counts.npz",
             tmp_path / "predictions.idx.npy.npz"]
    if order == "counts first":
        files = [files[1], files[0], files[2]]
    columns, stderr = score(cli, tmp_path, ",".join(map(str, files)), *truth_bigwigs(tmp_path, genome),
                            "--regions", f"{peaks},{negatives}", "--chroms", "chr1,chr2")
    assert_windows(columns, w_chrom, w_start)
    expected = expected_columns(logits, logcounts, windows(genome, w_chrom, w_start))
    assert_matches(columns, expected)
    assert ("swapped" in stderr) == (order == "counts first")
    named = conventions(tmp_path)
    assert named["window_center"].startswith("midpoint")
    assert "interleaved" in named["windows"] and f"{int(kept.sum())} of {len(kept)} loci kept" in named["windows"]
