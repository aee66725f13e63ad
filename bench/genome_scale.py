"""Genome scale: tiling windows over a synthetic genome, scored with every metric set and every preset, with
wall time and peak memory of each run.

    python bench/genome_scale.py DIR                      # 1,000,000 windows (L = 1000, stride 1000): ~8 GB
    python bench/genome_scale.py DIR --windows 250000     # a quarter: compare times for linearity
    python bench/genome_scale.py DIR --runs default,bpnet # only these (default, all and the five presets)
    python bench/genome_scale.py DIR --generate-only      # write the case and stop

The case (written once into DIR, reused when ``case.json`` there matches): chromosomes of 50 Mb tiled by
windows of L bases at stride L, 2 strands; observed bigWigs with a Poisson background on every base
(0.02 reads per base per strand) and a read pile every ~20 kb (lognormal size, so some windows pass
BPNet's auPRC depth filter and most do not); predictions in the native HDF5 layout (logits
``log(k + 0.5)`` plus noise, float32, chunked by 256 windows), with stored coordinates. Generation streams
one chromosome (observed) or one chunk (predictions) at a time: memory about 1 GB whatever N.

Each run is ``bpnet-eval score ... --no-plots`` in its own process, measured by ``bench/measure.py``: wall time,
CPU time (the run and its reading processes), the run's memory (the largest sum of its processes' PSS, sampled:
what a job's memory limit sees) and the largest resident set of any one of its processes. The report goes to a
temporary directory and is removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pyBigWig

CHROM_BASES = 50_000_000
BACKGROUND = 0.02  # reads per base per strand
PILE_EVERY = 20_000  # bases between read piles, on average
CHUNK_WINDOWS = 256
RUNS = {"default": ["--metrics", "default"], "all": ["--metrics", "all"], "bpnet-lite": ["--preset", "bpnet-lite"],
        "chrombpnet": ["--preset", "chrombpnet"], "bpnet": ["--preset", "bpnet"], "bpreveal": ["--preset", "bpreveal"],
        "basepairmodels": ["--preset", "basepairmodels"]}


def chromosome_sizes(windows: int, length: int) -> dict:
    """Chromosomes of at most 50 Mb holding exactly ``windows`` windows of ``length`` bases."""
    per_chrom = CHROM_BASES // length
    sizes, left, i = {}, windows, 1
    while left > 0:
        n = min(per_chrom, left)
        sizes[f"chr{i}"] = n * length
        left -= n
        i += 1
    return sizes


def chromosome_counts(size: int, rng) -> np.ndarray:
    """Integer counts ``(2, size)`` (int32): the background plus piles of reads around random summits."""
    counts = rng.poisson(BACKGROUND, size=(2, size)).astype(np.int32)
    summits = rng.integers(0, size, size=max(1, size // PILE_EVERY))
    reads = np.round(rng.lognormal(5.5, 1.0, size=len(summits))).astype(np.int64)
    for strand, shift in enumerate((-20, 20)):
        centre = np.repeat(summits + shift, reads // 2)
        ends = np.clip(np.round(centre + rng.normal(0.0, 40.0, size=len(centre))), 0, size - 1).astype(np.int64)
        counts[strand] += np.bincount(ends, minlength=size).astype(np.int32)
    return counts


def write_runs(bw, chrom: str, values: np.ndarray) -> None:
    """The nonzero runs of ``values`` as bedGraph entries (merged runs of equal values)."""
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(values)]])
    keep = values[starts] != 0
    starts, ends = starts[keep], ends[keep]
    bw.addEntries([chrom] * len(starts), starts.tolist(), ends=ends.tolist(),
                  values=values[starts].astype(np.float64).tolist())


def generate(out: Path, windows: int, length: int, seed: int) -> dict:
    """Write ``observed.{plus,minus}.bw`` and ``predictions.h5`` into ``out``, one chromosome at a time."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = chromosome_sizes(windows, length)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    bigwigs = [pyBigWig.open(str(out / f"observed.{name}.bw"), "w") for name in ("plus", "minus")]
    for bw in bigwigs:
        bw.addHeader(list(sizes.items()), maxZooms=0)
    with h5py.File(out / "predictions.h5", "w") as h5:
        logits = h5.create_dataset("predictions/logits", (windows, 2, length), dtype="f4",
                                   chunks=(CHUNK_WINDOWS, 2, length))
        logcounts = h5.create_dataset("predictions/logcounts", (windows, 1), dtype="f4")
        chrom_ds = h5.create_dataset("coords/coords_chrom", (windows,), dtype=h5py.string_dtype())
        start_ds = h5.create_dataset("coords/coords_start", (windows,), dtype="i8")
        end_ds = h5.create_dataset("coords/coords_end", (windows,), dtype="i8")
        row = 0
        for chrom, size in sizes.items():
            counts = chromosome_counts(size, rng)
            for strand, bw in enumerate(bigwigs):
                write_runs(bw, chrom, counts[strand])
            n = size // length
            tiles = counts.reshape(2, n, length).transpose(1, 0, 2)  # (n, 2, L) views, no copy
            for first in range(0, n, CHUNK_WINDOWS):
                k = tiles[first:first + CHUNK_WINDOWS]
                noise = rng.standard_normal(k.shape, dtype=np.float32)
                logits[row + first:row + first + len(k)] = np.log(k + np.float32(0.5)) + noise
                totals = k.sum(axis=(1, 2), dtype=np.float64)
                logcounts[row + first:row + first + len(k), 0] = np.log1p(totals) + rng.normal(0, 0.3, len(k))
            starts = np.arange(n, dtype=np.int64) * length
            chrom_ds[row:row + n] = [chrom] * n
            start_ds[row:row + n] = starts
            end_ds[row:row + n] = starts + length
            row += n
    for bw in bigwigs:
        bw.close()
    info = {"windows": windows, "length": length, "seed": seed, "chromosomes": len(sizes),
            "genome_bases": int(sum(sizes.values())), "generated_s": round(time.perf_counter() - started, 1)}
    (out / "case.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def timed_run(case: Path, flags: list, cli: str) -> dict:
    """Wall seconds, CPU seconds (user + system of the run and the reading processes it reaped: on a busy
    machine the measure of linearity), the peak RSS of its largest process and the run's peak memory (PSS summed
    over its processes: ``bench/measure.py``), in MB, of one ``bpnet-eval score`` run."""
    report = Path(tempfile.mkdtemp(prefix="genome-scale-")) / "report"
    command = [sys.executable, str(Path(__file__).with_name("measure.py")), cli, "score",
               str(case / "predictions.h5"), str(case / "observed.plus.bw"), str(case / "observed.minus.bw"), *flags,
               "--no-plots", "--out", str(report)]
    launched = subprocess.run(command, capture_output=True, text=True)
    shutil.rmtree(report.parent, ignore_errors=True)
    result = json.loads(launched.stdout) if launched.returncode == 0 else {"returncode": launched.returncode,
                                                                          "stderr": launched.stderr}
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(flags)} failed (exit {result['returncode']}): {result['stderr'].strip()[-500:]}")
    return {"wall_s": round(result["wall_s"], 2), "cpu_s": round(result["cpu_s"], 2),
            "peak_rss_mb": round(result["peak_rss_mb"]), "run_peak_mb": round(result["run_peak_mb"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", type=Path)
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=",".join(RUNS), help="comma list of " + ", ".join(RUNS))
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    wanted = {"windows": args.windows, "length": args.length, "seed": args.seed}
    info_path = args.case / "case.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if any(info.get(k) != v for k, v in wanted.items()):
        info = generate(args.case, args.windows, args.length, args.seed)
        print(f"generated {args.windows} windows over {info['genome_bases'] / 1e6:.0f} Mb in {info['generated_s']} s",
              flush=True)
    if args.generate_only:
        return 0
    cli = str(Path(sys.executable).parent / "bpnet-eval")
    results = {}
    print(f"{'run':14s} {'wall s':>8s} {'CPU s':>8s} {'run MB':>8s} {'largest process MB':>19s}", flush=True)
    for name in args.runs.split(","):
        results[name] = timed_run(args.case, RUNS[name], cli)
        run = results[name]
        print(f"{name:14s} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} {run['run_peak_mb']:8d} "
              f"{run['peak_rss_mb']:19d}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"case": info, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
