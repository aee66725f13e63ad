"""The benchmark's cases are what their shapes say (bench/make_case.py), each scores end to end, and the
seed-loss naive pipeline of bench/ computes the seed losses (against scipy, float64)."""

import json
import sys

import h5py
import numpy as np
import pyBigWig
import pytest
import torch
from scipy.special import gammaln, log_softmax

from tests.support.cli import REPO, run_cli

sys.path.insert(0, str(REPO / "bench"))
from make_case import SHAPES, make_case  # noqa: E402
from naive import count_measures, seed_losses  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_cases")
    return {shape: (root / shape, make_case(root / shape, 400, shape=shape, quiet=True)) for shape in SHAPES}


def score_files(case, description) -> list:
    """The inputs of the ``score`` command the benchmark runs on a case."""
    files = [",".join(str(case / p) for p in description["files"]["predictions"].split(","))]
    files += [case / t for t in description["files"]["truth"]]
    if description["files"].get("regions"):
        files += ["--regions", case / description["files"]["regions"]]
    return files


def observed_windows(case, description):
    """Observed counts ``(N, S, L)`` of the stored windows (of ``regions.bed`` for ``npz`` and ``predbw``), through
    pyBigWig."""
    chrom, start, end = case_windows(case, description)
    return chrom, start, windows_of([case / name for name in description["files"]["truth"]], chrom, start, end)


def windows_of(paths, chrom, start, end) -> np.ndarray:
    """The values of bigWigs ``paths`` over the windows, ``(N, len(paths), L)``, through pyBigWig."""
    handles = [pyBigWig.open(str(path)) for path in paths]
    return np.array([[np.nan_to_num(bw.values(c, int(a), int(b), numpy=True)) for bw in handles]
                     for c, a, b in zip(chrom, start, end)])


def case_windows(case, description):
    """A case's windows: of its ``regions.bed`` where its predictions store none, else stored."""
    if description["predictions_layout"] in ("npz", "bigwig"):
        rows = [line.split("\t") for line in (case / "regions.bed").read_text().splitlines()]
        return [r[0] for r in rows], np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows])
    return stored_windows(case, description)


def stored_windows(case, description):
    """The windows stored with a case's HDF5 predictions."""
    with h5py.File(case / description["files"]["predictions"], "r") as h5:
        if description["predictions_layout"] == "bpreveal":  # an index into chrom_names; start and stop at the top
            names = list(h5["chrom_names"].asstr()[:])
            return [names[k] for k in h5["coords_chrom"][:]], h5["coords_start"][:], h5["coords_stop"][:]
        chrom = [c.decode() for c in h5["coords/coords_chrom"][:]]
        if description["predictions_layout"] == "chrombpnet":  # the window centre - L//2 ..
            start = h5["coords/coords_center"][:] - description["length"] // 2
            end = start + description["length"]
        else:
            start, end = h5["coords/coords_start"][:], h5["coords/coords_end"][:]
    return chrom, start, end


def test_each_shape_holds_what_it_says(cases):
    for shape, (case, description) in cases.items():
        chrom, start, observed = observed_windows(case, description)
        tracks = 1 if shape in ("s1", "chrombpnet") else 8 if shape == "multitask" else 2
        # multitask: a quarter of --regions, long: a tenth of 10-kb windows (as many values as the two-track shapes)
        n = {"multitask": 100, "long": 40}.get(shape, 400)
        length = 10_000 if shape == "long" else 1000
        assert description["n_regions"] == n and description["n_tracks"] == tracks
        assert description["length"] == length
        if shape == "npz":  # (test_the_npz_shape_...)
            assert np.load(case / "predictions.profile.npz")["arr_0"].shape == (400, tracks, 1000)
        elif shape == "predbw":  # (test_the_predbw_shape_...)
            assert description["files"]["predictions"] == "predicted.plus.bw,predicted.minus.bw"
        else:
            with h5py.File(case / "predictions.h5", "r") as h5:
                if shape == "chrombpnet":
                    assert h5["predictions/profs"].shape == (400, 1000)
                elif shape in ("basepairmodels", "bpreveal"):  # (test_the_basepairmodels_and_bpreveal_shapes_...)
                    assert "coords/coords_peak" not in h5
                else:
                    assert h5["predictions/logits"].shape == (n, tracks, length), shape
                peak = h5["coords/coords_peak"][:] if "coords/coords_peak" in h5 else None
        assert observed.shape == (n, tracks, length) and (observed >= 0).all()
        integral = observed == np.rint(observed)
        if shape in ("normalised", "densefloat"):  # counts x 0.037 (CPM-like): no nonzero value an integer but 37 k
            counts = observed.astype(np.float64) / 0.037
            np.testing.assert_allclose(counts, np.rint(counts), rtol=1e-5)
            assert integral[observed != 0].mean() < 0.01 and observed.any()
        else:
            assert integral.all(), shape
        if shape == "genome":  # hg38's chromosomes, scaled to the case's size
            with pyBigWig.open(str(case / "observed.plus.bw")) as bw:
                assert list(bw.chroms()) == [f"chr{i}" for i in range(1, 23)] + ["chrX"]
        if shape == "scaffolds":  # 1,000 small contigs at 400 regions (20,000 at 100,000), windows on many
            with pyBigWig.open(str(case / "observed.plus.bw")) as bw:
                sizes = bw.chroms()
            assert len(sizes) == 1000 and min(sizes.values()) >= 2600 and len(set(chrom)) > 200
        if shape in ("peaks", "input2114"):
            assert peak.all(), shape
        if shape in ("background", "deep", "densefloat"):  # every base of every chromosome covered, none below 1
            floor = 0.037 if shape == "densefloat" else 1  # (in counts)
            with pyBigWig.open(str(case / "observed.plus.bw")) as bw:
                for name, size in bw.chroms().items():
                    values = bw.values(name, 0, size, numpy=True)
                    assert np.isfinite(values).all() and values.min() >= np.float32(floor), name
        elif shape == "cage":  # a few tall positions, nothing else
            assert (observed == 0).mean() > 0.99 and observed.max() >= 100
        else:
            assert (observed == 0).mean() > 0.5, shape
        if shape == "input2114":  # the narrowPeak's 2114-bp windows hold the stored 1000-bp windows in their middle
            rows = [line.split("\t") for line in (case / "peaks.narrowPeak").read_text().splitlines()]
            assert all(int(r[2]) - int(r[1]) == 2114 and r[9] == "1057" for r in rows)
            np.testing.assert_array_equal([int(r[1]) + 1057 - 500 for r in rows], start)
            assert [r[0] for r in rows] == chrom


def test_every_shape_scores_end_to_end_with_the_command_the_benchmark_runs(cases, tmp_path):
    for shape, (case, description) in cases.items():
        done = run_cli("score", *score_files(case, description), "--out", tmp_path / shape, "--quiet", "--no-plots")
        assert done.returncode == 0, (shape, done.stderr)
        rows = (tmp_path / shape / "regions.tsv").read_text().splitlines()
        header = rows[0].split("\t")
        mnll = np.array([float(r.split("\t")[header.index("profile_mnll")]) for r in rows[1:]])
        assert len(mnll) == description["n_regions"] and np.isfinite(mnll).all() and (mnll >= 0).all(), shape



def test_the_multitask_shape_holds_four_tasks_of_two_strands_each_at_its_own_peaks(cases):
    """``multitask``: 8 bigWigs, a plus and a minus strand per task, in the order of the logits' tracks; the chip case's
    genome (its size does not shrink with the quarter of the windows), and tasks that differ: each task's reads pile up
    at its own peaks (the first at every summit, the others at a random half)."""
    case, description = cases["multitask"]
    assert description["files"]["truth"] == [f"observed.task{t}.{s}.bw" for t in range(4) for s in ("plus", "minus")]
    assert description["chrom_sizes"] == cases["chip"][1]["chrom_sizes"]
    _, _, observed = observed_windows(case, description)
    per_task = observed.reshape(len(observed), 4, 2, -1).sum(axis=(2, 3))
    peaks = per_task[:len(observed) // 2]  # the peak windows come first
    assert (peaks[:, 0] > 0).all()  # the first task at every summit
    for t in range(1, 4):  # the others at about half of them: a pile (10 + lognormal(5, 1) reads, 90% above 45) over
        piled = peaks[:, t] > 45  # the background (0.01 a base and strand: 20 a window, above 45 once in ~1e6)
        assert 0.2 < piled.mean() < 0.8, (t, piled.mean())
    assert not np.array_equal(peaks[:, 1] > 45, peaks[:, 2] > 45)  # each task its own half


def test_the_ucsc_shape_holds_the_chip_signal_in_ucscs_block_layout(cases, tmp_path):
    """``ucsc``: the ``chip`` case's intervals (same seed), read back by pyBigWig, in data blocks of 1,024 intervals
    that never span a chromosome (the R tree's item count, read from the file), and scored to the same report."""
    import math
    import struct

    ucsc, chip = cases["ucsc"][0], cases["chip"][0]
    for name in ("observed.plus.bw", "observed.minus.bw"):
        with pyBigWig.open(str(ucsc / name)) as a, pyBigWig.open(str(chip / name)) as b:
            assert a.chroms() == b.chroms()
            per_chrom = [len(a.intervals(c) or ()) for c in a.chroms()]
            for c in a.chroms():
                assert a.intervals(c) == b.intervals(c), (name, c)
        raw = (ucsc / name).read_bytes()
        index_offset = struct.unpack_from("<Q", raw, 24)[0]
        magic, _, blocks = struct.unpack_from("<IIQ", raw, index_offset)
        assert magic == 0x2468ACE0 and blocks == sum(math.ceil(n / 1024) for n in per_chrom) > 1
    reports = []
    for case in (ucsc, chip):
        done = run_cli("score", case / "predictions.h5", case / "observed.plus.bw", case / "observed.minus.bw",
                       "--out", tmp_path / case.name, "--quiet", "--no-plots")
        assert done.returncode == 0, done.stderr
        reports.append((tmp_path / case.name / "regions.tsv").read_bytes())
    assert reports[0] == reports[1]

def test_the_chrombpnet_shape_holds_the_s1_predictions_in_chrombpnets_layout(cases, tmp_path):
    """``chrombpnet``: the ``s1`` case (same seed: the same track) with its predictions as chrombpnet's ``predict``
    writes them (float64 softmax probabilities (N, L), every dataset gzip-compressed in h5py's automatic chunks,
    ``coords_center``), scored to the ``s1`` report's numbers (the softmax of the same logits)."""
    from h5py._hl.filters import guess_chunk

    chrombpnet, s1 = cases["chrombpnet"][0], cases["s1"][0]
    assert (chrombpnet / "observed.bw").read_bytes() == (s1 / "observed.bw").read_bytes()
    with h5py.File(chrombpnet / "predictions.h5", "r") as h5, h5py.File(s1 / "predictions.h5", "r") as native:
        profs = h5["predictions/profs"]
        assert profs.dtype == np.float64 and profs.chunks == guess_chunk((400, 1000), None, 8)
        for name in ("predictions/profs", "predictions/logcounts", "coords/coords_chrom", "coords/coords_center",
                     "coords/coords_peak"):
            assert h5[name].compression == "gzip", name
        logits = native["predictions/logits"][:, 0].astype(np.float64)
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(profs[:], expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
        np.testing.assert_array_equal(h5["coords/coords_center"][:], native["coords/coords_start"][:] + 500)
        np.testing.assert_array_equal(h5["predictions/logcounts"][:], native["predictions/logcounts"][:, 0])
    reports = {}
    for case in (chrombpnet, s1):
        done = run_cli("score", case / "predictions.h5", case / "observed.bw", "--out", tmp_path / case.name,
                       "--quiet", "--no-plots")
        assert done.returncode == 0, done.stderr
        rows = [line.split("\t") for line in (tmp_path / case.name / "regions.tsv").read_text().splitlines()]
        reports[case.name] = {name: [row[k] for row in rows[1:]] for k, name in enumerate(rows[0])}
    for name in ("chrom", "start", "end", "peak", "observed_counts", "predicted_logcounts"):
        assert reports["chrombpnet"][name] == reports["s1"][name], name
    np.testing.assert_allclose(np.array(reports["chrombpnet"]["profile_mnll"], float),
                               np.array(reports["s1"]["profile_mnll"], float), rtol=1e-9)


def test_the_fixedstep_and_regionchunks_shapes_hold_the_chip_case_written_otherwise(cases, tmp_path):
    """``fixedstep``: the ``chip`` case's signal (same seed) with an entry on every base, zeros included;
    ``regionchunks``: the ``chip`` case's predictions gzip-compressed in chunks of one region. Both score to the
    ``chip`` report, byte for byte."""
    chip, fixedstep, regionchunks = cases["chip"][0], cases["fixedstep"][0], cases["regionchunks"][0]
    for name in ("observed.plus.bw", "observed.minus.bw"):
        with pyBigWig.open(str(fixedstep / name)) as a, pyBigWig.open(str(chip / name)) as b:
            assert a.chroms() == b.chroms()
            for c, size in a.chroms().items():
                entries = a.intervals(c)
                assert len(entries) == size and sum(v == 0 for _, _, v in entries) > size // 2, (name, c)
                np.testing.assert_array_equal(a.values(c, 0, size, numpy=True),
                                              np.nan_to_num(b.values(c, 0, size, numpy=True)))
    with h5py.File(regionchunks / "predictions.h5", "r") as h5, h5py.File(chip / "predictions.h5", "r") as native:
        logits = h5["predictions/logits"]
        assert logits.chunks == (1, 2, 1000) and logits.compression == "gzip"
        np.testing.assert_array_equal(logits[:], native["predictions/logits"][:])
    reports = []
    for case in (chip, fixedstep, regionchunks):
        done = run_cli("score", case / "predictions.h5", case / "observed.plus.bw", case / "observed.minus.bw",
                       "--out", tmp_path / case.name, "--quiet", "--no-plots")
        assert done.returncode == 0, done.stderr
        reports.append((tmp_path / case.name / "regions.tsv").read_bytes())
    assert reports[0] == reports[1] == reports[2]


def test_a_sparse_track_gives_the_dense_counts_and_their_smoothing():
    """The ``genome`` shape keeps its signal as positions and counts (``SparseTrack``); a window of it is the dense
    track's window, and of its smoothed view the window of the dense track smoothed whole (edges included)."""
    from make_case import SparseTrack, simulate_sparse, smoothed

    rng = np.random.default_rng(3)
    track = simulate_sparse(5_000, np.array([300, 2_500, 4_900]), rng, n_tracks=2, background_rate=0.05)
    dense = np.zeros(track.shape, np.int32)
    for s in range(2):
        dense[s, track.positions[s]] = track.counts[s]
    assert dense.sum() > 0 and isinstance(track, SparseTrack)
    smooth = smoothed(dense)
    for start in (0, 17, 2_400, 4_000):
        window = start + np.arange(1_000)
        np.testing.assert_array_equal(track[:, window], dense[:, window])
        np.testing.assert_allclose(track.smoothed()[:, window], smooth[:, window], rtol=1e-5, atol=1e-6)
    one = simulate_sparse(5_000, np.array([300, 2_500]), np.random.default_rng(3), n_tracks=1)
    assert one.shape == (1, 5_000)


def test_the_naive_seed_pipeline_computes_the_seed_losses():
    rng = np.random.default_rng(5)
    counts = rng.poisson(0.5, size=(7, 2, 50)).astype(np.float64)
    logits, logcounts = rng.normal(size=(7, 2, 50)), rng.normal(3.0, 1.0, size=(7, 1))
    got = seed_losses(torch.tensor(counts), torch.tensor(logits), torch.tensor(logcounts))
    flat_logps = log_softmax(logits.reshape(7, -1), axis=-1)
    flat_counts = counts.reshape(7, -1)
    totals = flat_counts.sum(-1)
    mnll = -gammaln(totals + 1) + gammaln(flat_counts + 1).sum(-1) - (flat_counts * flat_logps).sum(-1)
    count = (np.log1p(totals) - logcounts[:, 0]) ** 2
    np.testing.assert_allclose(got["mnll_joint"].numpy(), mnll, rtol=1e-12)
    np.testing.assert_allclose(got["log1p_mse"].numpy(), count, rtol=1e-12)
    np.testing.assert_allclose(got["mixture_loss"].numpy(), mnll + count, rtol=1e-12)
    stats = count_measures(torch.tensor(logcounts), torch.tensor(totals))
    np.testing.assert_allclose(float(stats["count_mse"]), count.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(stats["count_pearson"]), np.corrcoef(logcounts[:, 0], np.log1p(totals))[0, 1],
                               rtol=1e-10)


def test_the_genome_scale_case_tiles_its_genome_and_every_run_scores_it(tmp_path):
    """bench/genome_scale.py on a small genome: the windows tile the chromosomes, and every metric set and preset
    it runs (the seven of the 1M-window benchmark) scores the case, with its wall time, CPU time and peak RSS."""
    from genome_scale import RUNS, main as genome_scale

    out = tmp_path / "numbers.json"
    assert genome_scale([str(tmp_path / "case"), "--windows", "300", "--length", "100", "--json", str(out)]) == 0
    numbers = json.loads(out.read_text())
    assert set(numbers["runs"]) == set(RUNS) == {"default", "all", "bpnet-lite", "chrombpnet", "bpnet", "bpreveal",
                                                 "basepairmodels"}
    assert all(run["wall_s"] > 0 and run["cpu_s"] > 0 and run["run_peak_mb"] >= run["peak_rss_mb"] > 0
               for run in numbers["runs"].values())
    with h5py.File(tmp_path / "case" / "predictions.h5", "r") as h5:
        start, end = h5["coords/coords_start"][:], h5["coords/coords_end"][:]
        assert h5["predictions/logits"].shape == (300, 2, 100)
    assert (end - start == 100).all() and numbers["case"]["genome_bases"] == 300 * 100


def test_the_benchmark_prints_every_target_ratio(tmp_path):
    """bench/run_bench.py on a small generated case runs every stage and states every target it measures."""
    import subprocess

    out = tmp_path / "numbers.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run_bench.py"), "--regions", "300",
                           "--naive-regions", "100", "--no-heavy-naive", "--naive-repeat", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(out.read_text())
    assert set(numbers["ratios"]) >= {"naive_seed / score (target >= 10)", "score / floor_parallel (target <= 1.5)",
                                      "--metrics all / default (target <= 3)", "naive_seed / floor_parallel (its bound)"}
    walls = numbers["walls_s"]
    assert numbers["ratios"]["naive_seed / floor_parallel (its bound)"] == walls["naive_seed"] / walls["floor_parallel"]
    assert set(numbers["stages"]) >= {"score", "score_no_plots", "score_all", "floor", "floor_parallel",
                                      "naive_seed", "floor_parallel_batches", "floor_parallel_files"}
    splits = [numbers["stages"][f"floor_parallel_{split}"] for split in ("batches", "files")]
    assert numbers["stages"]["floor_parallel"] == min(splits, key=lambda stage: stage["wall_s"])
    assert [stage["split"] for stage in splits] == ["batches", "files"]
    assert splits[0]["checksum"] == pytest.approx(splits[1]["checksum"], rel=1e-9)  # the same windows, once each
    assert splits[0]["checksum"] == pytest.approx(numbers["stages"]["floor"]["checksum"], rel=1e-9)
    assert len(numbers["stages"]["naive_seed"]["walls_s"]) == 2 and len(numbers["stages"]["score"]["walls_s"]) == 1
    # round by round: score ran once, so each quotient has one paired ratio, of the first runs: where both stages ran
    # once, the ratio itself (naive_seed's first run need not be the median of its two)
    paired = numbers["paired_ratios"]
    assert paired.keys() == numbers["ratios"].keys() and all(len(each) == 1 for each in paired.values())
    assert all(each == [pytest.approx(numbers["ratios"][label])] for label, each in paired.items()
               if "naive" not in label)
    assert "round 1: score " in done.stdout and "round 2: naive_seed " in done.stdout
    assert all(numbers["stages"][stage]["cpu_s"] > 0 for stage in ("score", "score_all", "floor_parallel"))
    assert " CPU s " in done.stdout
    assert all(value > 0 for value in numbers["ratios"].values())


def test_the_stages_run_in_rounds_each_stages_kth_run_in_round_k():
    """run_bench's schedule: round k runs, in the order given, every stage with more than k runs, so that the stages'
    k-th runs lie close in time (a ratio of two stages compares runs under the same load of the host)."""
    from run_bench import rounds

    assert rounds({"score": 3, "floor": 3, "naive_seed": 1}) == [["score", "floor", "naive_seed"], ["score", "floor"],
                                                                ["score", "floor"]]
    assert rounds({"score": 1, "naive_seed": 2}) == [["score", "naive_seed"], ["naive_seed"]]
    assert rounds({"score": 2, "floor": 0}) == [["score"], ["score"]]
    assert rounds({}) == []


@pytest.mark.parametrize("tracks, processes", [(1, 2), (2, 2), (2, 3), (8, 2), (3, 1)])
@pytest.mark.parametrize("split", ["batches", "files"])
def test_the_parallel_floor_reads_every_file_of_every_batch_once(tracks, processes, split):
    """run_bench's parallel floor, either split: each (file, batch) pair read by exactly one process; split by files,
    each file is read whole by one process (the predictions by the first)."""
    from run_bench import floor_shares

    truth, bounds = [f"track{s}.bw" for s in range(tracks)], [(i, i + 10) for i in range(0, 70, 10)]
    shares = floor_shares("predictions.h5", truth, bounds, processes, split)
    assert len(shares) == processes
    read = [(f, b) for predictions, files, batches in shares for f in ([predictions] if predictions else []) + files
            for b in batches]
    assert sorted(read) == sorted((f, b) for f in ["predictions.h5", *truth] for b in bounds)
    if split == "files":
        assert shares[0][0] == "predictions.h5" and all(batches == bounds for *_, batches in shares)
        assert all(predictions is None for predictions, *_ in shares[1:])


def test_the_benchmark_re_measures_metrics_all_alone(tmp_path):
    """--skip of the floors, the naive pipeline and compute: only score's three runs, and only the ratio they give."""
    import subprocess

    out = tmp_path / "numbers.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run_bench.py"), "--regions", "300", "--no-heavy-naive",
                           "--skip", "floor,floor_parallel,naive_seed,compute", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(out.read_text())
    assert set(numbers["stages"]) == {"score", "score_no_plots", "score_all"}
    walls = numbers["walls_s"]
    assert numbers["ratios"] == {"--metrics all / default (target <= 3)": walls["score_all"] / walls["score_no_plots"]}


def test_the_gpu_script_runs_end_to_end_with_the_cpu_in_the_gpus_place(tmp_path):
    """bench/gpu.sh, as a GPU machine would run it but with GPU_BENCH_DEVICE=cpu (this machine has no GPU) and small
    cases: the fixture scored on both devices agrees, and every timing it reports is there."""
    import os
    import subprocess

    work = tmp_path / "work"
    env = {**os.environ, "GPU_BENCH_DEVICE": "cpu", "GPU_BENCH_REGIONS": "600", "GPU_BENCH_ALL_REGIONS": "300",
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(work)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "GPU == CPU on the fixture: yes" in done.stdout
    timing = json.loads((work / "gpu_timing.json").read_text())
    assert set(timing) == {"cpu", "cpu again"}
    for run in timing.values():
        assert set(run) >= {"compute_s", "score", "score --no-plots", "score --metrics all", "score_peak_rss_mb"}
        assert all(value > 0 for value in run.values())


def test_the_gpu_check_fails_a_number_beyond_its_tolerance_or_a_nan_on_one_device_only():
    """bench/gpu_check.py's comparison: within ``rtol`` (plus a tiny absolute slack near 0) passes; a larger gap, or
    a NaN where the other device has a number, fails."""
    from gpu_check import worst

    cpu = np.array([1.0, -2.0, 0.0, np.nan])
    assert worst(cpu, cpu * (1 + 5e-10), 1e-9)[1]
    relative, ok = worst(cpu, cpu * (1 + 5e-9), 1e-9)
    assert not ok and relative == pytest.approx(5e-9, rel=1e-3)
    assert not worst(cpu, np.array([1.0, -2.0, 0.0, 3.0]), 1e-9)[1]
    assert not worst(cpu, np.array([1.0, -2.0, np.nan, np.nan]), 1e-9)[1]


def test_the_shape_table_gives_each_shapes_ratios_and_the_bound_of_the_first(capsys):
    """run_bench's table of shapes: per shape the ratio to the naive seed pipeline, its bound (the naive pipeline
    against the parallel read floor: no run that reads the windows beats the floor), the ratio to the floor and
    --metrics all against the default run."""
    from run_bench import print_shape_table

    stage = {"run_peak_mb": 300.0, "peak_rss_mb": 200.0}
    saved = {"chip": {"walls_s": {"score": 2.0, "score_no_plots": 1.6, "score_all": 32.0, "naive_seed": 24.0,
                                  "floor_parallel": 1.2, "floor": 1.5},
                      "case": {"n_tracks": 2, "length": 1000, "files": {}},
                      "stages": {"score": stage, "score_all": {**stage, "run_peak_mb": 700.0},
                                 "floor_parallel": {"processes": 2}}}}
    print_shape_table(saved)
    header, rule, row = capsys.readouterr().out.splitlines()
    cells = dict(zip([cell.strip() for cell in header.strip("|").split("|")],
                     [cell.strip() for cell in row.strip("|").split("|")]))
    assert len(rule.strip("|").split("|")) == len(cells)
    assert cells["naive seed / score"] == "**12.0×**"
    assert cells["naive seed / floor ×P (its bound)"] == "20.0×"
    assert cells["score / floor ×P"] == "**1.67**"
    assert cells["all / default"] == "**20.0×**"
    assert cells["floor ×P s"] == "1.20 (×2)"
    # a run that measured score's stages alone (--skip floor,floor_parallel,naive_seed,compute)
    saved["chip"]["walls_s"] = {"score": 2.0, "score_no_plots": 1.6, "score_all": 24.0}
    del saved["chip"]["stages"]["floor_parallel"]
    print_shape_table(saved)
    row = capsys.readouterr().out.splitlines()[2]
    cells = dict(zip(cells, [cell.strip() for cell in row.strip("|").split("|")]))
    assert cells["all / default"] == "**15.0×**" and cells["score s"] == "2.00"
    assert {cells[name] for name in ("naive seed s", "naive seed / score", "naive seed / floor ×P (its bound)",
                                     "floor ×P s", "score / floor ×P", "floor ×1 s")} == {"not run"}


def test_pooled_passes_take_the_median_of_every_run_and_the_faster_floor(capsys):
    """bench/pool_passes.py: each stage's median over the runs of every pass, the naive pipeline's mean of the passes'
    scaled times, the faster split of the parallel floor (a pass from before the splits counts as by batches), the
    highest memory; the table of shapes prints from it."""
    from pool_passes import pooled
    from run_bench import print_shape_table

    def stage(walls, rss=200.0, **more):
        return {"walls_s": walls, "wall_s": sorted(walls)[len(walls) // 2], "peak_rss_mb": rss,
                "run_peak_mb": rss + 100, **more}

    case = {"n_tracks": 2, "length": 1000, "files": {}}
    first = {"chip": {"case": case, "walls_s": {"naive_seed": 40.0},
                      "stages": {"score": stage([3.0, 5.0, 4.0]), "floor": stage([2.0, 2.0, 2.0]),
                                 "floor_parallel": stage([1.5, 1.6, 1.4], processes=2),
                                 "naive_seed": stage([4.0, 4.1, 4.2])}}}
    second = {"chip": {"case": case, "walls_s": {"naive_seed": 30.0},
                       "stages": {"score": stage([2.0, 2.5, 6.0], rss=250.0), "floor": stage([1.0, 3.0, 2.0]),
                                  "floor_parallel_batches": stage([1.45, 1.5, 1.55], processes=2, split="batches"),
                                  "floor_parallel_files": stage([1.2, 1.3, 1.1], processes=2, split="files"),
                                  "naive_seed": stage([3.0, 3.1, 3.2])}}}
    table = pooled([first, second])["chip"]
    walls = table["walls_s"]
    assert walls["score"] == 3.5 and walls["floor"] == 2.0 and walls["naive_seed"] == 35.0
    assert walls["floor_parallel_batches"] == 1.5 and walls["floor_parallel_files"] == 1.2
    assert walls["floor_parallel"] == 1.2 and table["stages"]["floor_parallel"]["split"] == "files"
    assert table["stages"]["score"]["walls_s"] == [3.0, 5.0, 4.0, 2.0, 2.5, 6.0]
    assert table["stages"]["score"]["peak_rss_mb"] == 250.0 and table["passes"] == 2
    print_shape_table({"chip": table})
    header, _, row = capsys.readouterr().out.splitlines()
    cells = dict(zip([cell.strip() for cell in header.strip("|").split("|")],
                     [cell.strip() for cell in row.strip("|").split("|")]))
    assert cells["naive seed / score"] == "**10.0×**" and cells["floor ×P s"] == "1.20 (×2)"
    # one pass alone: its own floor, by batches
    assert pooled([first])["chip"]["walls_s"]["floor_parallel"] == 1.5


def test_pooled_passes_give_the_range_of_each_ratio_round_by_round(capsys):
    """bench/pool_passes.py below its table: per shape the lowest, median and highest of the round-by-round ratios of
    every pass that has them (a pass from before the rounds has none: nothing printed for it alone)."""
    from pool_passes import pooled, print_paired_ranges

    def result(paired):
        stage = {"walls_s": [1.0], "wall_s": 1.0, "peak_rss_mb": 1.0, "run_peak_mb": 1.0}
        return {"case": {}, "walls_s": {"naive_seed": 10.0}, "stages": {"score": stage, "naive_seed": stage},
                **({"paired_ratios": paired} if paired is not None else {})}

    first = {"chip": result({"naive_seed / score (target >= 10)": [9.0, 12.0, 10.0]})}
    second = {"chip": result({"naive_seed / score (target >= 10)": [8.0, 11.0, 13.0],
                              "score / floor_parallel (target <= 1.5)": [2.0]})}
    table = pooled([first, second])
    assert table["chip"]["paired_ratios"]["naive_seed / score (target >= 10)"] == [9.0, 12.0, 10.0, 8.0, 11.0, 13.0]
    print_paired_ranges(table)
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row == "| `chip` | 8.0, 10.5, 13.0 (6) | 2.0, 2.0, 2.0 (1) |"
    print_paired_ranges(pooled([{"chip": result(None)}]))
    assert capsys.readouterr().out == ""


def test_measure_sums_the_memory_of_every_process_of_a_run():
    """bench/measure.py: a parent holding ~60 MB whose child holds ~120 MB for a while: the largest process is the
    child's, the run's memory both together (PSS summed over the process tree: pages shared since the fork count
    once)."""
    import subprocess

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc")
    script = ("import subprocess, sys; held = bytearray(60 << 20); held[::4096] = b'x' * len(held[::4096]); "
              "child = ('import time; held = bytearray(120 << 20); held[::4096] = b\\'y\\' * len(held[::4096]); "
              "time.sleep(1.5)'); subprocess.run([sys.executable, '-c', child]); print('done')")
    measured = subprocess.run([sys.executable, str(REPO / "bench" / "measure.py"), sys.executable, "-c", script],
                              capture_output=True, text=True)
    result = json.loads(measured.stdout)
    assert result["returncode"] == 0 and result["stdout"].strip() == "done", result["stderr"]
    assert 120 <= result["peak_rss_mb"] < 170  # the child's
    assert result["run_peak_mb"] >= 175  # parent and child at once
    assert result["cpu_s"] > 0 and result["wall_s"] >= 1.5


def test_the_npz_shape_holds_the_chip_predictions_as_bpnet_lite_writes_them(cases, tmp_path):
    """``npz``: the ``chip`` case (same seed: the same tracks, windows and predictions) with its predictions in two
    compressed .npz files as bpnet-lite 0.9's ``predict`` writes them (``np.savez_compressed``: one deflated member
    ``arr_0.npy``) and its windows in a BED file; scored to the ``chip`` report's numbers, byte for byte."""
    import csv
    import zipfile

    npz, chip = cases["npz"][0], cases["chip"][0]
    for name in ("observed.plus.bw", "observed.minus.bw"):
        assert (npz / name).read_bytes() == (chip / name).read_bytes()
    for name in ("predictions.profile.npz", "predictions.counts.npz"):
        with zipfile.ZipFile(npz / name) as archive:
            (member,) = archive.infolist()
            assert member.filename == "arr_0.npy" and member.compress_type == zipfile.ZIP_DEFLATED
    with h5py.File(chip / "predictions.h5", "r") as native:
        np.testing.assert_array_equal(np.load(npz / "predictions.profile.npz")["arr_0"], native["predictions/logits"][:])
        np.testing.assert_array_equal(np.load(npz / "predictions.counts.npz")["arr_0"], native["predictions/logcounts"][:])
        chrom, start, end = stored_windows(chip, cases["chip"][1])
    assert (npz / "regions.bed").read_text() == "".join(f"{c}\t{a}\t{b}\n" for c, a, b in zip(chrom, start, end))
    reports = []
    for case, description in (cases["npz"], cases["chip"]):
        done = run_cli("score", *score_files(case, description), "--out", tmp_path / case.name, "--quiet", "--no-plots")
        assert done.returncode == 0, done.stderr
        with open(tmp_path / case.name / "regions.tsv") as handle:
            reports.append(list(csv.DictReader(handle, delimiter="\t")))
    shared = [name for name in reports[0][0] if name in reports[1][0]]  # (chip's also has its peak flags)
    assert len(shared) == len(reports[0][0]) >= 8
    assert [[row[k] for k in shared] for row in reports[0]] == [[row[k] for k in shared] for row in reports[1]]


def test_the_predbw_shape_holds_predicted_bigwigs_a_block_a_window(cases):
    """``predbw``: counts-scale predictions (softmax times the predicted total, float32) on every base of its windows,
    which lie on the chromosomes' tiles without touching, one fixed-step data block a window (the R tree's item count,
    read from the file), nothing between the windows."""
    import struct

    case, description = cases["predbw"]
    chrom, start, end = case_windows(case, description)
    assert len(start) == 400 and (end - start == 1000).all() and (start % 1000 == 0).all()
    order = list(description["chrom_sizes"])
    keys = [(order.index(c), a) for c, a in zip(chrom, start)]
    assert keys == sorted(set(keys))  # genome order, no window twice: none overlap
    assert not any(c == chrom[k - 1] and a == end[k - 1] for k, (c, a) in enumerate(zip(chrom, start)) if k)
    paths = [case / name for name in description["files"]["predictions"].split(",")]
    predicted = windows_of(paths, chrom, start, end)
    assert (predicted > 0).all() and (predicted != np.rint(predicted)).mean() > 0.99
    totals = predicted.sum(axis=(1, 2))
    assert np.log(totals).std() > 0.3  # predicted totals vary from window to window
    for path in paths:
        raw = path.read_bytes()
        index_offset = struct.unpack_from("<Q", raw, 24)[0]
        magic, _, blocks = struct.unpack_from("<IIQ", raw, index_offset)
        assert magic == 0x2468ACE0 and blocks == len(start)
        with pyBigWig.open(str(path)) as bw:
            covered = sum(len(bw.intervals(c) or ()) for c in bw.chroms())
        assert covered == 1000 * len(start)  # one value a base of the windows, none elsewhere


def test_the_benchmarks_readers_agree_on_every_prediction_layout(cases):
    """bench/run_bench.py reads predictions as score does (the floor) and as a user's script does (the naive
    pipeline): the same profiles and log counts either way, for the native, chrombpnet, basepairmodels and BPReveal
    HDF5 layouts, .npz and bigWigs."""
    from run_bench import load_case, opened_predictions

    for shape in ("chip", "chrombpnet", "npz", "predbw", "basepairmodels", "bpreveal"):
        case = cases[shape][0]
        predictions, _, chrom, start, end = load_case(case, 400)
        with opened_predictions(predictions, True, (chrom, start, end)) as fast, \
                opened_predictions(predictions, False, (chrom, start, end)) as naive:
            for i, j in ((0, 150), (150, 400), (37, 38)):
                (a, b), (c, d) = fast(i, j), naive(i, j)
                np.testing.assert_array_equal(a, c, err_msg=shape)
                np.testing.assert_array_equal(np.asarray(b).reshape(j - i, -1), np.asarray(d).reshape(j - i, -1),
                                              err_msg=shape)


def test_the_basepairmodels_and_bpreveal_shapes_hold_the_chip_predictions_as_those_tools_write_them(cases, tmp_path):
    """``basepairmodels``: the ``chip`` case's predictions (same seed) as basepairmodels' ``predict`` writes them,
    counts-scale ``softmax(z_s) (e^c_s - 1)`` ``(N, L, S)`` and per-track log counts ``c_s = c + ln(share_s)``, float64
    gzip in h5py's automatic chunks; ``bpreveal``: its logits ``(N, L, S)`` and log counts as BPReveal's writer
    stores them, float32 in chunks of 100 regions. Checked against the native file in float64 numpy; both score to the
    ``chip`` report's per-track MNLL, BPReveal's every shared column byte for byte."""
    import csv

    from h5py._hl.filters import guess_chunk

    chip = cases["chip"][0]
    with h5py.File(chip / "predictions.h5", "r") as native:
        z = native["predictions/logits"][:].astype(np.float64)
        c = native["predictions/logcounts"][:, 0].astype(np.float64)
        windows = [native["coords/coords_chrom"].asstr()[:].tolist(), native["coords/coords_start"][:],
                   native["coords/coords_end"][:]]
    share = np.exp(z).sum(axis=2) / np.exp(z).sum(axis=(1, 2))[:, None]
    per_track = c[:, None] + np.log(share)
    softmax = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    with h5py.File(cases["basepairmodels"][0] / "predictions.h5", "r") as h5:
        for name in ("predictions/pred_profs", "predictions/pred_logcounts", "coords/coords_chrom",
                     "coords/coords_start", "coords/coords_end"):
            assert h5[name].compression == "gzip" and h5[name].chunks == guess_chunk(h5[name].shape, None,
                                                                                      h5[name].dtype.itemsize), name
        profs = h5["predictions/pred_profs"]
        assert profs.dtype == np.float64 and profs.shape == (400, 1000, 2)
        np.testing.assert_allclose(h5["predictions/pred_logcounts"][:], per_track, rtol=1e-12)
        np.testing.assert_allclose(profs[:], (softmax * np.expm1(per_track)[:, :, None]).transpose(0, 2, 1),
                                   rtol=1e-12)
        assert h5["coords/coords_chrom"].asstr()[:].tolist() == windows[0]
        assert np.array_equal(h5["coords/coords_start"][:], windows[1])
        assert np.array_equal(h5["coords/coords_end"][:], windows[2])
    case, description = cases["bpreveal"]
    with h5py.File(case / "predictions.h5", "r") as h5:
        logits, logcounts = h5["head_0/logits"], h5["head_0/logcounts"]
        assert logits.dtype == logcounts.dtype == np.float32 and logits.chunks == (100, 1000, 2)
        assert logcounts.chunks == (100,) and h5["coords_chrom"].dtype == np.uint8
        assert h5["coords_start"].dtype == h5["coords_stop"].dtype == np.uint32
        np.testing.assert_array_equal(logits[:].transpose(0, 2, 1), z.astype(np.float32))
        np.testing.assert_array_equal(logcounts[:], c.astype(np.float32))
    chrom, start, end = stored_windows(case, description)
    assert chrom == windows[0] and np.array_equal(start, windows[1]) and np.array_equal(end, windows[2])
    reports = {}
    for shape in ("chip", "basepairmodels", "bpreveal"):
        case, description = cases[shape]
        done = run_cli("score", *score_files(case, description), "--out", tmp_path / shape, "--quiet", "--no-plots")
        assert done.returncode == 0, done.stderr
        with open(tmp_path / shape / "regions.tsv") as handle:
            reports[shape] = list(csv.DictReader(handle, delimiter="\t"))
    shared = [name for name in reports["bpreveal"][0] if name in reports["chip"][0]]
    assert len(shared) == len(reports["bpreveal"][0]) >= 8
    assert [[row[k] for k in shared] for row in reports["bpreveal"]] == [[row[k] for k in shared]
                                                                          for row in reports["chip"]]
    for name in ("profile_mnll_plus", "profile_mnll_minus"):
        np.testing.assert_allclose([float(row[name]) for row in reports["basepairmodels"]],
                                   [float(row[name]) for row in reports["chip"]], rtol=1e-9)


def test_the_naive_pipeline_joins_per_track_log_counts_into_the_regions_total():
    """basepairmodels stores a log count a track ``(b, S)``: the naive pipeline's region total is ``ln sum_s e^c_s``
    (float64, written here); one log count a region, ``(b,)`` or ``(b, 1)``, is taken as it is."""
    from run_bench import region_logcounts

    per_track = np.array([[1.0, 2.0], [3.0, -1.0], [700.0, 700.0]])
    expected = [np.log(np.e + np.e ** 2), np.log(np.e ** 3 + np.e ** -1), 700.0 + np.log(2.0)]
    np.testing.assert_allclose(region_logcounts(per_track)[:, 0], expected, rtol=1e-15)
    assert region_logcounts(per_track).shape == (3, 1)
    for one in (np.array([1.5, -2.0]), np.array([[1.5], [-2.0]])):
        np.testing.assert_array_equal(region_logcounts(one), [[1.5], [-2.0]])
