"""Benchmark: ``bpnet-eval score`` against the read-only floors, the compute alone and the
pipelines users write today, on the same files, each in its own process, per data shape.

    python bench/run_bench.py                      # generate the 100k chip case in a temp dir, run all
    python bench/run_bench.py --case DIR           # reuse a case made by bench/make_case.py
    python bench/run_bench.py --case DIR --repeat 3  # median of 3 runs per stage (the naive ones run once), the
                                                     # stages run in rounds: each one's first run, then each
                                                     # one's second, ... (``rounds``)
    python bench/run_bench.py --regions 20000      # a smaller case
    python bench/run_bench.py --naive-regions 20000  # time the naive pipelines on the first
                                                     # 20000 regions and extrapolate linearly
    python bench/run_bench.py --cases ROOT --shapes all  # every shape of make_case.py, each case in
                                                     # ROOT/<shape> (made there when missing), one
                                                     # table each and a summary table at the end

Stages (every stage is a fresh subprocess; wall time includes interpreter start and imports,
peak RSS is the largest ``ru_maxrss`` of the stage's processes, run memory the largest sum of their PSS, sampled
(``bench/measure.py``: what a job's memory limit sees); CPU is the user + system seconds of all of them, the measure
to cut where every core is busy):

* ``score``: the installed ``bpnet-eval score`` CLI end to end (reads, computes, writes the report,
  with its default figures); ``score_no_plots``: the same with ``--no-plots``; ``score_all``: with
  ``--no-plots --metrics all`` (every metric; its ratio to ``score_no_plots`` is the ``--metrics all``
  target; ``--skip score_all`` leaves it out);
* ``floor``: reading the same windows and nothing else, in one process: ``BigWigReader.read`` per
  batch and track, and the predictions' logits and log counts from the HDF5 in the same batches;
* ``floor_parallel``: the same reads over as many processes as ``score`` runs (its main process plus its
  default reading processes), forked at the start, split two ways, each timed (``floor_parallel_batches``: the
  batches dealt round-robin; ``floor_parallel_files``: the files, the predictions and each bigWig read whole by
  one process, as ``score`` gives each file to one reading process); the faster is the floor (a file decoded whole
  for any window, e.g. ``genome``'s, is decoded by every process when the batches are split);
* ``compute``: the per-batch computation ``score`` runs (``compute.BatchComputer``), on batches
  read once and held in memory, repeated to cover N regions;
* ``naive_seed``: the pipeline a user writes for the seed losses: pyBigWig ``values`` per region
  and track, then bpnet-lite's ``MNLLLoss`` of the joint ``log_softmax``, ``log1pMSELoss`` and the
  mixture loss in torch (batches of 200), and count Pearson, Spearman and MSE across regions
  (``bench/naive.py``);
* ``naive``: the same loop plus the seven ``calculate_performance_measures`` columns (the heavier
  reference; ``--no-heavy-naive`` leaves it out).

Prints a table and the ratios the targets are stated in (of the stages' medians, and round by round where a stage
ran more than once); ``--json FILE`` saves the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

NAIVE_BATCH = 200


# --------------------------------------------------------------------------- stages (children)
def narrowpeak_windows(path: Path, length: int, n: int):
    """Chromosome, start and end of the first ``n`` windows ``start + summit - L//2 .. + L`` of a narrowPeak file."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[:n]]
    chrom = np.array([r[0] for r in rows], dtype=object)
    start = np.array([int(r[1]) + int(r[9]) - length // 2 for r in rows], dtype=np.int64)
    return chrom, start, start + length


def bed_windows(path: Path, length: int, n: int):
    """Chromosome, start and end of the first ``n`` windows ``start..end`` of a BED file of L-wide rows."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[:n]]
    chrom = np.array([r[0] for r in rows], dtype=object)
    start = np.array([int(r[1]) for r in rows], dtype=np.int64)
    return chrom, start, start + length


# The profile and log counts datasets of each HDF5 predictions layout of make_case.py
PREDICTION_DATASETS = {"native": ("predictions/logits", "predictions/logcounts"),
                       "chrombpnet": ("predictions/profs", "predictions/logcounts"),
                       "basepairmodels": ("predictions/pred_profs", "predictions/pred_logcounts"),
                       "bpreveal": ("head_0/logits", "head_0/logcounts")}
# the layouts whose profiles are stored (N, L, S)
POSITIONS_FIRST = ("basepairmodels", "bpreveal")


def prediction_layout(case_dir: Path) -> str:
    """How a case's predictions are stored: ``native``, ``chrombpnet``, ``basepairmodels`` or ``bpreveal`` (HDF5),
    ``npz`` (bpnet-lite 0.9) or ``bigwig`` (counts-scale bigWigs, one a track)."""
    return json.loads((case_dir / "case.json").read_text()).get("predictions_layout", "native")


def as_logits(profile: np.ndarray, layout: str) -> np.ndarray:
    """A batch of a stored profile as logits ``(b, S, L)``, as a user turns it into them: probabilities
    (``chrombpnet``) by ``log``, counts-scale values (``bigwig``, ``basepairmodels``) by ``log`` of their magnitude
    with 0 as the smallest float32 (basepairmodels writes a track whose log count is below 0 negative), ``(b, L)`` as
    one track, ``(b, L, S)`` transposed."""
    if layout == "chrombpnet":
        profile = np.log(profile)
    elif layout in ("bigwig", "basepairmodels"):
        profile = np.log(np.maximum(np.abs(profile), np.finfo(np.float32).tiny))
    if layout in POSITIONS_FIRST:
        profile = profile.transpose(0, 2, 1)
    return profile[:, None, :] if profile.ndim == 2 else profile


def region_logcounts(logcounts: np.ndarray) -> np.ndarray:
    """A batch's stored log counts as one per region ``(b, 1)``: per-track ones (basepairmodels' ``(b, S)``) by
    ``ln sum_s e^c_s``."""
    logcounts = np.asarray(logcounts, dtype=np.float64).reshape(len(logcounts), -1)
    return logcounts if logcounts.shape[1] == 1 else np.logaddexp.reduce(logcounts, axis=1, keepdims=True)


def load_case(case_dir: Path, n: int):
    """The prediction files, the truth files and the first ``n`` windows of a generated case (from its ``--regions``
    file when it has one)."""
    import h5py

    description = json.loads((case_dir / "case.json").read_text())
    predictions = [case_dir / name for name in description["files"]["predictions"].split(",")]
    truth = [case_dir / name for name in description["files"]["truth"]]
    regions = description["files"].get("regions")
    if regions:
        windows = bed_windows if regions.endswith(".bed") else narrowpeak_windows
        return (predictions, truth, *windows(case_dir / regions, description["length"], n))
    with h5py.File(predictions[0], "r") as h5:
        if "chrom_names" in h5:  # BPReveal: an index into chrom_names, coords_start/coords_stop at the top level
            chrom = np.array(h5["chrom_names"].asstr()[:], dtype=object)[h5["coords_chrom"][:n]]
            return predictions, truth, chrom, *(h5[name][:n].astype(np.int64) for name in ("coords_start",
                                                                                              "coords_stop"))
        chrom = np.array([c.decode() if isinstance(c, bytes) else c for c in h5["coords/coords_chrom"][:n]],
                         dtype=object)
        if "coords/coords_center" in h5:  # chrombpnet: the window centre - L//2 ..
            start = h5["coords/coords_center"][:n] - description["length"] // 2
            end = start + description["length"]
        else:
            start, end = h5["coords/coords_start"][:n], h5["coords/coords_end"][:n]
    return predictions, truth, chrom, start, end


def opened_predictions(predictions: list, fast: bool, windows: tuple, rows: Optional[np.ndarray] = None):
    """A context giving ``read(i, j) -> (profile, log counts)`` of a case's prediction files, as stored
    (``as_logits`` makes the profile logits): ``fast``, as ``score`` reads them, else as a user's script does; the
    ``windows`` (chrom, start, end) and ``rows`` serve predicted bigWigs (``_bigwig_predictions``)."""
    layout = prediction_layout(Path(predictions[0]).parent)
    if layout == "bigwig":
        return _bigwig_predictions(predictions, fast, windows, rows)
    if layout == "npz":
        return _npz_predictions(predictions, fast)
    return _hdf5_predictions(predictions[0], fast, *PREDICTION_DATASETS[layout])


@contextmanager
def _hdf5_predictions(path: Path, fast: bool, profile_name: str, logcounts_name: str):
    """HDF5 rows by ``sources.chunks.rows_reader`` (``fast``: h5py, or chunk by chunk where gzip-compressed), else
    h5py slices."""
    import h5py

    from bpnet_eval.sources.chunks import rows_reader

    with h5py.File(path, "r") as h5:
        profile, logcounts = (rows_reader(h5[profile_name]), rows_reader(h5[logcounts_name])) if fast else \
            (lambda i, j: h5[profile_name][i:j], lambda i, j: h5[logcounts_name][i:j])
        yield lambda i, j: (profile(i, j), logcounts(i, j))


@contextmanager
def _npz_predictions(paths: list, fast: bool):
    """The profile batch by batch by ``sources.npz.NpzArray`` (``fast``), else each file ``np.load``ed whole."""
    from bpnet_eval.sources.npz import NpzArray

    if not fast:
        profile, logcounts = (np.load(path)["arr_0"] for path in paths)
        yield lambda i, j: (profile[i:j], logcounts[i:j])
        return
    profile, counts = (NpzArray(str(path), memory_limit=1 << 62) for path in paths)
    logcounts = counts.load()
    try:
        yield lambda i, j: (profile.rows(i, j), logcounts[i:j])
    finally:
        profile.close()


@contextmanager
def _bigwig_predictions(paths: list, fast: bool, windows: tuple, rows: Optional[np.ndarray]):
    """Counts-scale bigWigs' values over the windows and the log of each window's total: by ``BigWigReader``, told
    the windows at ``rows`` (default: all) first (``fast``), else by pyBigWig ``values`` per window and file."""
    chrom, start, end = windows
    if fast:
        from bpnet_eval.sources.bigwig import BigWigReader

        rows = np.arange(len(start)) if rows is None else rows
        readers = [BigWigReader(str(path)) for path in paths]
        for reader in readers:
            reader.expect(reader.chrom_ids(chrom[rows]), start[rows], end[rows])
        values = lambda i, j: np.stack([r.read(chrom[i:j], start[i:j], end[i:j]) for r in readers], axis=1)
    else:
        import pyBigWig

        readers = [pyBigWig.open(str(path)) for path in paths]
        values = lambda i, j: np.array([[np.nan_to_num(bw.values(chrom[r], int(start[r]), int(end[r]), numpy=True))
                                         for bw in readers] for r in range(i, j)], dtype=np.float32)

    def read(i, j):
        profile = values(i, j)
        return profile, np.log(profile.sum(axis=(1, 2), dtype=np.float64))[:, None]

    try:
        yield read
    finally:
        for reader in readers:
            reader.close()


def read_batches(predictions, truth, chrom, start, end, bounds) -> float:
    """Read the windows and predictions of the batches ``bounds`` (``[(i, j), ...]``) as ``score`` reads them
    (``BigWigReader``, told the windows first; the predictions by ``opened_predictions(fast=True)``; none where
    ``predictions`` is None); a checksum."""
    from bpnet_eval.sources.bigwig import BigWigReader

    readers = [BigWigReader(str(p)) for p in truth]
    rows = np.concatenate([np.arange(i, j) for i, j in bounds]) if bounds else np.zeros(0, np.int64)
    for reader in readers:  # told the windows to come, as score's reading processes tell each file (``expect``)
        reader.expect(reader.chrom_ids(chrom[rows]), start[rows], end[rows])
    checksum = 0.0
    opened = nullcontext() if predictions is None else opened_predictions(predictions, True, (chrom, start, end), rows)
    with opened as read:
        for i, j in bounds:
            if read is not None:
                logits, logcounts = read(i, j)
                checksum += float(logits[:, 0].sum()) + float(logcounts.sum())
            for reader in readers:
                checksum += float(reader.read(chrom[i:j], start[i:j], end[i:j])[:, 0].sum())
    return checksum


def score_processes(n: int, batch_size: int) -> int:
    """The processes ``score`` reads and computes with by default: its main process and its reading processes."""
    from bpnet_eval.inputs import batch_bounds, default_read_workers

    return 1 + default_read_workers(len(batch_bounds(0, n, batch_size)))


def floor_shares(predictions, truth: list, bounds: list, processes: int, split: str = "batches") -> list:
    """Each process's ``(predictions or None, truth files, batches)``: every file and the batches dealt round-robin
    (``split="batches"``), or the files (the predictions, then each truth file) dealt round-robin, each with every
    batch (``"files"``)."""
    if split == "batches":
        return [(predictions, truth, bounds[k::processes]) for k in range(processes)]
    # the files [predictions, *truth] dealt round-robin: process k takes truth file j where (j + 1) % processes == k
    return [(predictions if k == 0 else None, truth[(k - 1) % processes::processes], bounds) for k in range(processes)]


def stage_floor(case_dir: Path, n: int, batch_size: int, processes: int = 1, split: str = "batches") -> dict:
    """Read every window from the bigWigs (BigWigReader) and the HDF5, batch by batch, nothing else, in
    ``processes`` processes (forked here, before any file is opened), the work split as ``floor_shares``."""
    from bpnet_eval.inputs import batch_bounds

    predictions, truth, chrom, start, end = load_case(case_dir, n)
    began = time.perf_counter()
    shares = floor_shares(predictions, truth, batch_bounds(0, n, batch_size), processes, split)
    children = []
    for k in range(1, processes):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a reading process: its share, the checksum through the pipe
            os.close(read_end)
            os.write(write_end, repr(read_batches(*shares[k][:2], chrom, start, end, shares[k][2])).encode())
            os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    checksum = read_batches(*shares[0][:2], chrom, start, end, shares[0][2])
    for pid, read_end in children:
        with os.fdopen(read_end) as pipe:
            checksum += float(pipe.read())
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"a reading process failed (status {status})")
    return {"seconds": time.perf_counter() - began, "regions": n, "processes": processes, "split": split,
            "checksum": checksum}


def stage_compute(case_dir: Path, n: int, batch_size: int, device: str, held_batches: int = 8) -> dict:
    """Time ``score``'s per-batch computation alone over ``n`` regions (batches held in memory)."""
    import torch

    from bpnet_eval.compute import BatchComputer
    from bpnet_eval.sources.bigwig import BigWigReader

    predictions, truth, chrom, start, end = load_case(case_dir, min(n, held_batches * batch_size))
    readers = [BigWigReader(str(p)) for p in truth]
    track_names = ["plus", "minus"] if len(truth) == 2 else [f"track{s}" for s in range(len(truth))]
    layout = prediction_layout(case_dir)
    batches = []
    with opened_predictions(predictions, True, (chrom, start, end)) as read:
        for i in range(0, len(start), batch_size):
            j = min(len(start), i + batch_size)
            observed = np.stack([r.read(chrom[i:j], start[i:j], end[i:j]) for r in readers], axis=1)
            profile, logcounts = read(i, j)
            batches.append((as_logits(profile, layout), logcounts.reshape(j - i, -1), observed))
    computer = BatchComputer(count_loss_weight=1.0, track_names=track_names, device=device)
    done, k = 0, 0
    began = time.perf_counter()
    with torch.inference_mode():
        while done < n:
            logits, logcounts, observed = batches[k % len(batches)]
            take = min(len(logits), n - done)
            computer(logits[:take], logcounts[:take], observed[:take])
            done += take
            k += 1
        if computer.device.type == "cuda":
            torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - began, "regions": n, "held_batches": len(batches)}


def stage_naive(case_dir: Path, n: int, heavy: bool = True) -> dict:
    """pyBigWig per region and strand + bpnet-lite-equivalent torch code in batches of 200: the seed losses and the
    count statistics, and with ``heavy`` the seven ``calculate_performance_measures`` columns too."""
    import pyBigWig
    import torch

    from naive import bpnet_lite_measures, count_measures, seed_losses

    predictions, truth, chrom, start, end = load_case(case_dir, n)
    layout = prediction_layout(case_dir)
    began = time.perf_counter()
    handles = [pyBigWig.open(str(p)) for p in truth]
    per_region, logcounts_all, totals_all = [], [], []
    with opened_predictions(predictions, False, (chrom, start, end)) as read, torch.no_grad():
        opened = time.perf_counter() - began  # (an .npz loaded whole: once, whatever n)
        for i in range(0, n, NAIVE_BATCH):
            j = min(n, i + NAIVE_BATCH)
            observed = np.empty((j - i, len(handles), int(end[0] - start[0])), dtype=np.float32)
            for r in range(i, j):
                for s, bw in enumerate(handles):
                    observed[r - i, s] = np.nan_to_num(bw.values(chrom[r], int(start[r]), int(end[r]), numpy=True))
            # float32, as bpnet-lite computes (chrombpnet's profiles and log counts are stored as float64)
            stored_logits, stored_logcounts = read(i, j)
            logits = torch.tensor(as_logits(stored_logits, layout), dtype=torch.float32)
            logcounts = torch.tensor(region_logcounts(stored_logcounts), dtype=torch.float32)
            true_counts = torch.tensor(observed)
            columns = seed_losses(true_counts, logits, logcounts)
            if heavy:
                columns.update(bpnet_lite_measures(torch.log_softmax(logits, dim=-1), true_counts))
            per_region.append({k: v.numpy() for k, v in columns.items()})
            logcounts_all.append(logcounts)
            totals_all.append(true_counts.sum(dim=(1, 2)))
        counts = count_measures(torch.cat(logcounts_all), torch.cat(totals_all))
    for bw in handles:
        bw.close()
    means = {k: float(np.nanmean(np.concatenate([c[k] for c in per_region]))) for k in per_region[0]}
    return {"seconds": time.perf_counter() - began, "once_seconds": opened, "regions": n,
            "means": {**means, **{k: float(v) for k, v in counts.items()}}}


# --------------------------------------------------------------------------- the driver (parent)
# ``bench/measure.py`` (standard library only) starts each measured command: a child forked straight from this driver
# (which has imported numpy and torch) would count the driver's resident pages in its ru_maxrss.
MEASURE = BENCH / "measure.py"


def run_measured(command) -> dict:
    """Run ``command`` to completion; wall seconds, CPU seconds (user + system of every process it ran and reaped),
    the peak RSS of its largest process and the run's peak memory (PSS summed over its processes) in MB, stdout,
    stderr (``bench/measure.py``)."""
    launched = subprocess.run([sys.executable, str(MEASURE), *map(str, command)], capture_output=True, text=True)
    if launched.returncode != 0:
        raise SystemExit(f"launcher failed: {launched.stderr[-3000:]}")
    result = json.loads(launched.stdout)
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({result['returncode']}):\n{result['stderr'][-3000:]}")
    return result


def child_stage(name: str, args, n: int) -> dict:
    """Run one stage of this script in a fresh interpreter."""
    command = [sys.executable, __file__, "--stage", name, "--case", str(args.case), "--regions", str(n),
               "--batch-size", str(args.batch_size), "--device", args.device]
    result = run_measured(command)
    result.update(json.loads(result.pop("stdout").strip().splitlines()[-1]))
    return result


def median_run(runs: list) -> dict:
    """The run with the median wall time (the upper median of an even count), with every wall time and the
    highest peak RSS and run memory of all runs."""
    chosen = dict(sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2])
    chosen["walls_s"] = [round(r["wall_s"], 3) for r in runs]
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    chosen["run_peak_mb"] = max(r["run_peak_mb"] for r in runs)
    return chosen


def rounds(counts: dict) -> list:
    """The order the stages run in: round ``k`` runs, in the order given, each stage with more than ``k`` runs
    (``counts``: stage -> runs). Interleaved, the stages' ``k``-th runs lie minutes apart at most, so a ratio of two
    stages compares runs under the same load of a host whose speed drifts by up to 2x within a 20-minute pass
    (stop 55); run one stage after another, the first stage's runs and the last's were minutes apart."""
    return [[stage for stage, count in counts.items() if count > k] for k in range(max(counts.values(), default=0))]


def machine() -> str:
    """CPU model, cores usable, memory, Python and torch versions."""
    import torch

    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{model}, {cores} cores, {memory:.0f} GB RAM, {gpu}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


NAIVE_STAGES = ("naive_seed", "naive")
# the parallel floor's two splits (``floor_shares``), measured as stages of their own: the faster is ``floor_parallel``
PARALLEL_FLOORS = {"floor_parallel_batches": "batches", "floor_parallel_files": "files"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a case directory from bench/make_case.py "
                                                  "(default: generate one in a temporary directory)")
    parser.add_argument("--cases", type=Path, help="with --shapes: a directory holding one case per shape "
                                                   "(ROOT/<shape>, made there when missing)")
    parser.add_argument("--shapes", default="chip", help="with --cases: comma-separated shapes of "
                                                         "bench/make_case.py, or 'all'")
    parser.add_argument("--regions", type=int, default=100_000, help="regions to generate / score")
    parser.add_argument("--naive-regions", type=int, default=None,
                        help="time the naive pipelines on the first K regions only and extrapolate linearly")
    parser.add_argument("--no-heavy-naive", action="store_true",
                        help="leave out the heavier naive pipeline (seed losses + performance measures)")
    parser.add_argument("--skip", default="", help="comma-separated stages to leave out: score_no_plots, score_all, "
                                                   "compute, floor, floor_parallel (both splits; or one of "
                                                   "floor_parallel_batches, floor_parallel_files), naive_seed (the "
                                                   "ratios they enter are then not printed; e.g. "
                                                   "floor,floor_parallel,naive_seed,compute re-measures --metrics all "
                                                   "/ default alone)")
    parser.add_argument("--batch-size", type=int, help="regions per batch (score, floor, compute); default: score's "
                                                        "own for the case's tracks and L (options.batch_regions)")
    parser.add_argument("--device", default="cpu", help="device for score and the compute stage")
    parser.add_argument("--repeat", type=int, default=1, help="run each stage but the naive ones this many times, "
                                                              "in rounds (every stage once, then again), and report "
                                                              "the median wall time (highest peak RSS)")
    parser.add_argument("--naive-repeat", type=int, default=1,
                        help="run the naive pipelines this many times and take the median (their time moves most: "
                             "one run of chip's took 25.6 s and the next 32.7 s)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--stage", choices=("floor", *PARALLEL_FLOORS, "compute", *NAIVE_STAGES),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:
        n = args.regions
        result = {"floor": lambda: stage_floor(args.case, n, args.batch_size),
                  **{stage: lambda split=split: stage_floor(args.case, n, args.batch_size,
                                                            score_processes(n, args.batch_size), split)
                     for stage, split in PARALLEL_FLOORS.items()},
                  "compute": lambda: stage_compute(args.case, n, args.batch_size, args.device),
                  "naive_seed": lambda: stage_naive(args.case, n, heavy=False),
                  "naive": lambda: stage_naive(args.case, n)}[args.stage]()
        print(json.dumps(result))
        return

    from make_case import SHAPES, make_case

    if args.cases is not None:
        shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
        unknown = [shape for shape in shapes if shape not in SHAPES]
        if unknown:
            raise SystemExit(f"--shapes: unknown {', '.join(unknown)}; choose from {', '.join(SHAPES)} or all")
        saved = {}
        for shape in shapes:
            args.case = args.cases / shape
            if not (args.case / "case.json").exists():
                make_case(args.case, args.regions, shape=shape)
            saved[shape] = report(args)
        print_shape_table(saved)
        if args.json:
            args.json.write_text(json.dumps(saved, indent=2) + "\n")
        return
    temporary = None
    if args.case is None:
        temporary = tempfile.mkdtemp(prefix="bpnet-eval-bench-")
        args.case = Path(temporary) / "case"
        make_case(args.case, args.regions)
    try:
        saved = report(args)
        if args.json:
            args.json.write_text(json.dumps(saved, indent=2) + "\n")
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


# What the stages import, imported once before the first of a case's stages (``warm_imports``).
WARM_IMPORTS = ("import bpnet_eval.cli.score, bpnet_eval.pipeline, bpnet_eval.inputs, bpnet_eval.report.writer, h5py, "
                "torch; import importlib.util as u; u.find_spec('matplotlib') and __import__('matplotlib.figure'); "
                "u.find_spec('matplotlib') and __import__('matplotlib.backends.backend_agg')")


def warm_page_cache(paths) -> None:
    """Read every input file once, so that every stage reads them from memory: the first stage would otherwise pay
    for reading the disk (or the host reclaiming the page cache of files not read for a while) alone."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(8 << 20):
                pass


def warm_imports() -> None:
    """Import what the stages import, in a process of its own, so that the files of Python's packages are in the page
    cache too: where reading the cases had evicted them, the first stage alone paid for reading them again (the
    `score` stage of a 15-shape run was 0.3-1.3 s slower than a median of 3 on several shapes; after the page cache
    was dropped, a first `genome` run took 3.67 s against 3.16 s for the next two)."""
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], check=False, capture_output=True)


def report(args) -> dict:
    """Run every stage on ``args.case``; print its table and ratios; return the numbers."""
    from bpnet_eval.options import batch_regions

    description = json.loads((args.case / "case.json").read_text())
    args = argparse.Namespace(**{**vars(args), "batch_size": batch_regions(args.batch_size, description["n_tracks"],
                                                                           description["length"])})
    n = min(args.regions, description["n_regions"])
    if n != description["n_regions"]:
        raise SystemExit(f"--regions {args.regions}: the case holds {description['n_regions']} regions; "
                         "score runs on whole files, so give the case's size or make a new case")
    naive_n = min(n, args.naive_regions or n)
    shape = description.get("shape", "chip")
    print(f"machine: {machine()}")
    print(f"case: {args.case} ({shape}: {n} regions, {description['n_tracks']} track(s), L = {description['length']}, "
          f"chunk {description['predictions_chunk_regions']} regions); batch size {args.batch_size}, "
          f"device {args.device}", flush=True)

    cli = Path(sys.executable).parent / "bpnet-eval"
    out_dir = Path(tempfile.mkdtemp(prefix="bpnet-eval-bench-report-"))
    naive_stages = NAIVE_STAGES[:1] if args.no_heavy_naive else NAIVE_STAGES
    try:
        files = [",".join(str(args.case / p) for p in description["files"]["predictions"].split(","))] + \
                [str(args.case / t) for t in description["files"]["truth"]]
        if description["files"].get("regions"):
            files += ["--regions", str(args.case / description["files"]["regions"])]
        warm_page_cache([f for part in files if part != "--regions" for f in part.split(",")])
        warm_imports()
        skipped = set(filter(None, args.skip.split(",")))
        if "floor_parallel" in skipped:
            skipped |= set(PARALLEL_FLOORS)
        plan = {}  # stage: (runs, one run)
        for stage, extra in (("score", []), ("score_no_plots", ["--no-plots"]),
                             ("score_all", ["--no-plots", "--metrics", "all"])):
            command = [str(cli), "score", *files, "--out", str(out_dir / stage), "--quiet", "--device", args.device,
                       "--batch-size", str(args.batch_size), *extra]
            plan[stage] = (args.repeat, lambda command=command: run_measured(command))
        stages = [("floor", n), *((stage, n) for stage in PARALLEL_FLOORS), ("compute", n)] + \
            [(name, naive_n) for name in naive_stages]
        for stage, count in stages:
            runs = args.naive_repeat if stage in NAIVE_STAGES else args.repeat
            plan[stage] = (runs, lambda stage=stage, count=count: child_stage(stage, args, count))
        plan = {stage: planned for stage, planned in plan.items() if stage not in skipped}
        runs = {stage: [] for stage in plan}
        for k, round_stages in enumerate(rounds({stage: count for stage, (count, _) in plan.items()})):
            for stage in round_stages:
                runs[stage].append(plan[stage][1]())
            timed = ", ".join(f"{stage} {runs[stage][-1]['wall_s']:.2f} s" for stage in round_stages)
            print(f"  round {k + 1}: {timed}" + (f" (naive pipelines on {naive_n} regions)" if naive_n != n else ""),
                  flush=True)
        results = {stage: median_run(stage_runs) for stage, stage_runs in runs.items()}
        splits = [results[stage] for stage in PARALLEL_FLOORS if stage in results]
        if splits:
            results["floor_parallel"] = min(splits, key=lambda r: r["wall_s"])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    scale = n / naive_n

    def run_wall(stage: str, run: dict) -> float:
        # extrapolate the in-process time only; interpreter start, imports and opening the files (an .npz loaded
        # whole) happen once
        naive = stage in NAIVE_STAGES
        return run["wall_s"] + (scale - 1) * (run["seconds"] - run.get("once_seconds", 0.0)) if naive else run["wall_s"]

    walls = {stage: run_wall(stage, r) for stage, r in results.items()}
    per_round = {stage: [run_wall(stage, r) for r in stage_runs] for stage, stage_runs in runs.items()}
    if splits:
        per_round["floor_parallel"] = [min(walls_k) for walls_k in zip(*(per_round[s] for s in PARALLEL_FLOORS
                                                                            if s in per_round))]
    processes = results.get("floor_parallel", {}).get("processes")
    print()
    print(f"{'stage':22s} {'wall s':>9s} {'in-process s':>13s} {'CPU s':>7s} {'regions/s':>11s} {'peak RSS MB':>12s} "
          f"{'run MB':>7s}")
    for stage, result in results.items():
        naive = stage in NAIVE_STAGES
        inner = result.get("seconds", float("nan")) + (scale - 1 if naive else 0) * (
            result.get("seconds", float("nan")) - result.get("once_seconds", 0.0))
        cpu = "-" if naive and scale != 1 else f"{result['cpu_s']:.2f}"  # not extrapolated: shown where measured whole
        note = f"  (measured on {naive_n} regions, x{scale:.2f})" if naive and scale != 1 else ""
        if stage == "floor_parallel":
            note += f"  ({processes} processes; the faster split: {result['split']})"
        elif stage in PARALLEL_FLOORS:
            note += f"  ({processes} processes, split by {result['split']})"
        print(f"{stage:22s} {walls[stage]:9.2f} {inner:13.2f} {cpu:>7s} {n / walls[stage]:11,.0f} "
              f"{result['peak_rss_mb']:12.0f} {result['run_peak_mb']:7.0f}{note}")
    # label: (stage, stage): the first's wall time over the second's, where both ran. A score that reads the windows
    # can be no faster than reading them: naive_seed / floor_parallel is the most naive_seed / score can be with
    # the readers as they are.
    quotients = {"naive_seed / score (target >= 10)": ("naive_seed", "score"),
                 "naive_seed / floor_parallel (its bound)": ("naive_seed", "floor_parallel"),
                 "score / floor_parallel (target <= 1.5)": ("score", "floor_parallel"),
                 "score / floor (one process)": ("score", "floor"),
                 "score --no-plots / floor_parallel": ("score_no_plots", "floor_parallel"),
                 "--metrics all / default (target <= 3)": ("score_all", "score_no_plots"),
                 "compute / floor": ("compute", "floor"),
                 "naive (+ performance measures) / score": ("naive", "score")}
    ratios = {label: walls[a] / walls[b] for label, (a, b) in quotients.items() if a in walls and b in walls}
    # the same quotients round by round (``rounds``): the k-th runs of both stages, run minutes apart at most
    paired = {label: [a_k / b_k for a_k, b_k in zip(per_round[a], per_round[b])] for label, (a, b) in quotients.items()
              if label in ratios}
    print()
    for label, value in ratios.items():
        each = f"  (round by round: {', '.join(f'{r:.2f}' for r in paired[label])})" if len(paired[label]) > 1 else ""
        print(f"{label:40s} {value:6.2f}{each}")
    print(f"{'score run memory (target < 1024 MB)':40s} {results['score']['run_peak_mb']:6.0f} MB "
          f"(largest process {results['score']['peak_rss_mb']:.0f} MB)")
    print(flush=True)
    return {"machine": machine(), "shape": shape, "case": description, "regions": n, "naive_regions": naive_n,
            "batch_size": args.batch_size, "device": args.device, "ratios": ratios, "paired_ratios": paired,
            "walls_s": walls,
            "stages": {k: {key: v for key, v in r.items() if key not in ("stderr",)} for k, r in results.items()}}


def print_shape_table(saved: dict) -> None:
    """One row per shape: the ratios the targets are stated in and the run's memory (markdown)."""
    print("| shape | S | L | score s | naive seed s | naive seed / score | naive seed / floor ×P (its bound) "
          "| floor ×P s | score / floor ×P | floor ×1 s | all / default | run MB (largest process) | all: run MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for shape, r in saved.items():
        walls, case, score = r["walls_s"], r["case"], r["stages"]["score"]
        processes = r["stages"].get("floor_parallel", {}).get("processes")
        cell = lambda a, b, form: form.format(walls[a] / walls[b]) if a in walls and b in walls else "not run"
        seconds = lambda stage: f"{walls[stage]:.2f}" if stage in walls else "not run"
        length = f"{case['length']}" + (" (2114 in)" if case["files"].get("regions", "").endswith(".narrowPeak")
                                         else "")
        all_memory = f"{r['stages']['score_all']['run_peak_mb']:.0f}" if "score_all" in r["stages"] else "not run"
        floor_parallel = f"{walls['floor_parallel']:.2f} (×{processes})" if processes else "not run"
        print(f"| {shape} | {case['n_tracks']} | {length} | {walls['score']:.2f} | {seconds('naive_seed')} "
              f"| {cell('naive_seed', 'score', '**{:.1f}×**')} | {cell('naive_seed', 'floor_parallel', '{:.1f}×')} "
              f"| {floor_parallel} | {cell('score', 'floor_parallel', '**{:.2f}**')} | {seconds('floor')} "
              f"| {cell('score_all', 'score_no_plots', '**{:.1f}×**')} "
              f"| {score['run_peak_mb']:.0f} ({score['peak_rss_mb']:.0f}) | {all_memory} |")


if __name__ == "__main__":
    main()
