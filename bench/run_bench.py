"""Benchmark: ``bpnet-eval score`` against the read-only floor, the compute alone and the
pipeline users write today, on the same files, each in its own process.

    python bench/run_bench.py                      # generate the 100k case in a temp dir, run all
    python bench/run_bench.py --case DIR           # reuse a case made by bench/make_case.py
    python bench/run_bench.py --case DIR --repeat 3  # median of 3 runs per stage (the naive one runs once)
    python bench/run_bench.py --regions 20000      # a smaller case
    python bench/run_bench.py --naive-regions 20000  # time the naive pipeline on the first
                                                     # 20000 regions and extrapolate linearly

Stages (every stage is a fresh subprocess; wall time includes interpreter start and imports,
peak RSS is the child's ``ru_maxrss``):

* ``score``: the installed ``bpnet-eval score`` CLI end to end (reads, computes, writes the report,
  with its default figures); ``score_no_plots``: the same with ``--no-plots``;
* ``floor``: reading the same windows and nothing else: ``BigWigReader.read`` per batch and
  strand, and the predictions' logits and log counts from the HDF5 in the same batches;
* ``compute``: the per-batch computation ``score`` runs (``compute.BatchComputer``), on batches
  read once and held in memory, repeated to cover N regions;
* ``naive``: what users write today: pyBigWig ``values`` per region per strand, then
  bpnet-lite-equivalent torch code (written here) in batches of 200: the seed losses (joint
  MNLL, log1p MSE, mixture loss) and the seven ``calculate_performance_measures`` columns.

Prints a table and the ratios the targets are stated in; ``--json FILE`` saves the numbers.
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
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

NAIVE_BATCH = 200


# --------------------------------------------------------------------------- stages (children)
def load_case(case_dir: Path, n: int):
    """Paths and the first ``n`` stored windows of a generated case."""
    import h5py

    description = json.loads((case_dir / "case.json").read_text())
    predictions = case_dir / description["files"]["predictions"]
    truth = [case_dir / name for name in description["files"]["truth"]]
    with h5py.File(predictions, "r") as h5:
        chrom = np.array([c.decode() if isinstance(c, bytes) else c for c in h5["coords/coords_chrom"][:n]],
                         dtype=object)
        start = h5["coords/coords_start"][:n]
        end = h5["coords/coords_end"][:n]
    return predictions, truth, chrom, start, end


def stage_floor(case_dir: Path, n: int, batch_size: int) -> dict:
    """Read every window from the bigWigs (BigWigReader) and the HDF5, batch by batch; nothing else."""
    import h5py

    from bpnet_eval.sources.bigwig import BigWigReader

    predictions, truth, chrom, start, end = load_case(case_dir, n)
    began = time.perf_counter()
    readers = [BigWigReader(str(p)) for p in truth]
    checksum = 0.0
    with h5py.File(predictions, "r") as h5:
        logits, logcounts = h5["predictions/logits"], h5["predictions/logcounts"]
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            checksum += float(logits[i:j][:, 0, 0].sum()) + float(logcounts[i:j].sum())
            for reader in readers:
                checksum += float(reader.read(chrom[i:j], start[i:j], end[i:j])[:, 0].sum())
    return {"seconds": time.perf_counter() - began, "regions": n, "checksum": checksum}


def stage_compute(case_dir: Path, n: int, batch_size: int, device: str, held_batches: int = 8) -> dict:
    """Time ``score``'s per-batch computation alone over ``n`` regions (batches held in memory)."""
    import h5py
    import torch

    from bpnet_eval.compute import BatchComputer
    from bpnet_eval.sources.bigwig import BigWigReader

    predictions, truth, chrom, start, end = load_case(case_dir, min(n, held_batches * batch_size))
    readers = [BigWigReader(str(p)) for p in truth]
    batches = []
    with h5py.File(predictions, "r") as h5:
        for i in range(0, len(start), batch_size):
            j = min(len(start), i + batch_size)
            observed = np.stack([r.read(chrom[i:j], start[i:j], end[i:j]) for r in readers], axis=1)
            batches.append((h5["predictions/logits"][i:j], h5["predictions/logcounts"][i:j], observed))
    computer = BatchComputer(count_loss_weight=1.0, track_names=["plus", "minus"], device=device)
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


def stage_naive(case_dir: Path, n: int) -> dict:
    """pyBigWig per region and strand + bpnet-lite-equivalent torch metrics in batches of 200."""
    import h5py
    import pyBigWig
    import torch

    from naive import bpnet_lite_measures, count_measures, seed_losses

    predictions, truth, chrom, start, end = load_case(case_dir, n)
    began = time.perf_counter()
    handles = [pyBigWig.open(str(p)) for p in truth]
    per_region, logcounts_all, totals_all = [], [], []
    with h5py.File(predictions, "r") as h5, torch.no_grad():
        for i in range(0, n, NAIVE_BATCH):
            j = min(n, i + NAIVE_BATCH)
            observed = np.empty((j - i, len(handles), int(end[0] - start[0])), dtype=np.float32)
            for r in range(i, j):
                for s, bw in enumerate(handles):
                    observed[r - i, s] = np.nan_to_num(bw.values(chrom[r], int(start[r]), int(end[r]), numpy=True))
            logits = torch.tensor(h5["predictions/logits"][i:j])
            logcounts = torch.tensor(h5["predictions/logcounts"][i:j])
            true_counts = torch.tensor(observed)
            columns = seed_losses(true_counts, logits, logcounts)
            columns.update(bpnet_lite_measures(torch.log_softmax(logits, dim=-1), true_counts))
            per_region.append({k: v.numpy() for k, v in columns.items()})
            logcounts_all.append(logcounts)
            totals_all.append(true_counts.sum(dim=(1, 2)))
        counts = count_measures(torch.cat(logcounts_all), torch.cat(totals_all))
    for bw in handles:
        bw.close()
    means = {k: float(np.nanmean(np.concatenate([c[k] for c in per_region]))) for k in per_region[0]}
    return {"seconds": time.perf_counter() - began, "regions": n,
            "means": {**means, **{k: float(v) for k, v in counts.items()}}}


# --------------------------------------------------------------------------- the driver (parent)
# A small interpreter starts each measured command: a child forked straight from this driver
# (which has imported numpy and torch) would count the driver's resident pages in its ru_maxrss.
LAUNCHER = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); wall = time.perf_counter() - t; "
            "print(json.dumps({'wall_s': wall, 'returncode': p.returncode, 'stdout': p.stdout, 'stderr': p.stderr, "
            "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")


def run_measured(command) -> dict:
    """Run ``command`` to completion; wall seconds, its peak RSS in MB, stdout, stderr."""
    launched = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, command)], capture_output=True, text=True)
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
    highest peak RSS of all runs."""
    chosen = dict(sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2])
    chosen["walls_s"] = [round(r["wall_s"], 3) for r in runs]
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return chosen


def repeats(result: dict) -> str:
    walls = result["walls_s"]
    return "" if len(walls) == 1 else f" (median of {', '.join(f'{w:.2f}' for w in walls)})"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a case directory from bench/make_case.py "
                                                  "(default: generate one in a temporary directory)")
    parser.add_argument("--regions", type=int, default=100_000, help="regions to generate / score")
    parser.add_argument("--naive-regions", type=int, default=None,
                        help="time the naive pipeline on the first K regions only and extrapolate linearly")
    parser.add_argument("--batch-size", type=int, default=1024, help="regions per batch (score, floor, compute)")
    parser.add_argument("--device", default="cpu", help="device for score and the compute stage")
    parser.add_argument("--repeat", type=int, default=1, help="run each stage but the naive one this many times "
                                                              "and report the median wall time (highest peak RSS)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--stage", choices=("floor", "compute", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:
        n = args.regions
        result = {"floor": lambda: stage_floor(args.case, n, args.batch_size),
                  "compute": lambda: stage_compute(args.case, n, args.batch_size, args.device),
                  "naive": lambda: stage_naive(args.case, n)}[args.stage]()
        print(json.dumps(result))
        return

    temporary = None
    if args.case is None:
        from make_case import make_case

        temporary = tempfile.mkdtemp(prefix="bpnet-eval-bench-")
        args.case = Path(temporary) / "case"
        make_case(args.case, args.regions)
    try:
        report(args)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def report(args) -> None:
    description = json.loads((args.case / "case.json").read_text())
    n = min(args.regions, description["n_regions"])
    if n != description["n_regions"]:
        raise SystemExit(f"--regions {args.regions}: the case holds {description['n_regions']} regions; "
                         "score runs on whole files, so give the case's size or make a new case")
    naive_n = min(n, args.naive_regions or n)
    print(f"machine: {machine()}")
    print(f"case: {args.case} ({n} regions, {description['n_tracks']} strands, L = {description['length']}, "
          f"chunk {description['predictions_chunk_regions']} regions); batch size {args.batch_size}, "
          f"device {args.device}", flush=True)

    cli = Path(sys.executable).parent / "bpnet-eval"
    out_dir = Path(tempfile.mkdtemp(prefix="bpnet-eval-bench-report-"))
    try:
        files = [str(args.case / description["files"]["predictions"])] + \
                [str(args.case / t) for t in description["files"]["truth"]]
        results = {}
        for stage, extra in (("score", []), ("score_no_plots", ["--no-plots"])):
            command = [str(cli), "score", *files, "--out", str(out_dir / stage), "--quiet", "--device", args.device,
                       "--batch-size", str(args.batch_size), *extra]
            results[stage] = median_run([run_measured(command) for _ in range(args.repeat)])
            print(f"  {stage} done in {results[stage]['wall_s']:.1f} s{repeats(results[stage])}", flush=True)
        for stage, count in (("floor", n), ("compute", n), ("naive", naive_n)):
            runs = args.repeat if stage != "naive" else 1
            results[stage] = median_run([child_stage(stage, args, count) for _ in range(runs)])
            print(f"  {stage} done in {results[stage]['wall_s']:.1f} s{repeats(results[stage])}", flush=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    scale = n / naive_n
    # extrapolate the in-process time only; interpreter start and imports happen once
    naive_wall = results["naive"]["wall_s"] + (scale - 1) * results["naive"]["seconds"]
    print()
    print(f"{'stage':15s} {'wall s':>9s} {'in-process s':>13s} {'regions/s':>11s} {'peak RSS MB':>12s}")
    for stage, result in results.items():
        wall = naive_wall if stage == "naive" else result["wall_s"]
        inner = result.get("seconds", float("nan")) * (scale if stage == "naive" else 1)
        note = f"  (measured on {naive_n} regions, x{scale:.2f})" if stage == "naive" and scale != 1 else ""
        print(f"{stage:15s} {wall:9.2f} {inner:13.2f} {n / wall:11,.0f} {result['peak_rss_mb']:12.0f}{note}")
    ratios = {"naive / score (target >= 10)": naive_wall / results["score"]["wall_s"],
              "score / floor (target <= 1.5)": results["score"]["wall_s"] / results["floor"]["wall_s"],
              "score --no-plots / floor": results["score_no_plots"]["wall_s"] / results["floor"]["wall_s"],
              "compute / floor": results["compute"]["wall_s"] / results["floor"]["wall_s"]}
    print()
    for label, value in ratios.items():
        print(f"{label:32s} {value:6.2f}")
    print(f"{'score peak RSS (target < 1024 MB)':32s} {results['score']['peak_rss_mb']:6.0f} MB")
    if args.json:
        saved = {"machine": machine(), "regions": n, "naive_regions": naive_n, "batch_size": args.batch_size,
                 "device": args.device, "ratios": ratios,
                 "stages": {k: {key: v for key, v in r.items() if key not in ("stderr",)} for k, r in results.items()}}
        args.json.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
