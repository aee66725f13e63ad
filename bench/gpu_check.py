"""The GPU check and benchmark that ``bench/gpu.sh`` runs (see there): GPU == CPU on the fixture, then compute
alone and ``score`` end to end on a large case, CPU vs GPU, with the ratios.

    python bench/gpu_check.py equal  --out DIR [--device cuda]    # exit 1 when a number differs beyond tolerance
    python bench/gpu_check.py timing --case DIR [--device cuda]   # a case from bench/make_case.py

``--device cpu`` runs every step on the CPU twice (the script's own check on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

FIXTURE = [ROOT / "data/fixtures/predictions.h5", ROOT / "data/fixtures/observed.plus.bw",
           ROOT / "data/fixtures/observed.minus.bw"]
# (label, options, relative tolerance): float64 on either device sums in another order (dense sums on the GPU,
# sparse on the CPU), float32 is the documented 1e-4; ranks and bins of --metrics all agree up to ties.
RUNS = [("default float64", [], 1e-9), ("--metrics all float64", ["--metrics", "all"], 1e-7),
        ("default float32", ["--dtype", "float32"], 1e-4)]
ABSOLUTE = 1e-9  # values near 0 (correlations of flat windows, count MSE of perfect predictions)


def cli() -> str:
    return str(Path(sys.executable).parent / "bpnet-eval")


def read_tsv(path: Path) -> dict:
    """``regions.tsv`` as ``{column: numpy float array}`` (numeric columns only)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    columns = {}
    for name in rows[0] if rows else []:
        try:
            columns[name] = np.array([float(r[name]) for r in rows])
        except ValueError:
            continue  # chromosome names, labels
    return columns


def numbers(value, prefix="") -> dict:
    """Every number in a JSON value, keyed by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{prefix}{i}.").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix.rstrip("."): float(value)}
    return {}


def worst(a: np.ndarray, b: np.ndarray, rtol: float) -> tuple:
    """``(largest relative difference, whether every value is within rtol/ABSOLUTE, same NaN pattern)``."""
    same_nan = bool(np.array_equal(np.isnan(a), np.isnan(b)))
    finite = np.isfinite(a) & np.isfinite(b)
    gap = np.abs(a[finite] - b[finite])
    scale = np.maximum(np.abs(a[finite]), np.abs(b[finite]))
    ok = bool(np.all(gap <= rtol * scale + ABSOLUTE)) and same_nan
    relative = float(np.max(gap / np.where(scale > 0, scale, 1.0))) if gap.size else 0.0
    return relative, ok


def equal(out: Path, device: str) -> int:
    """Score the fixture on the CPU and on ``device`` for every run of ``RUNS``; compare every number."""
    failed = 0
    for label, options, rtol in RUNS:
        reports = []
        for k, where in enumerate(("cpu", device)):  # k: GPU_BENCH_DEVICE=cpu scores on the CPU twice
            report = out / f"{label.replace(' ', '_').replace('-', '')}_{k}_{where.replace(':', '')}"
            command = [cli(), "score", *map(str, FIXTURE), "--out", str(report), "--quiet", "--no-plots",
                       "--device", where, *options]
            subprocess.run(command, check=True)
            reports.append(report)
        cpu, gpu = (read_tsv(report / "regions.tsv") for report in reports)
        summary_cpu, summary_gpu = (numbers(json.loads((report / "summary.json").read_text())) for report in reports)
        keys = [k for k in summary_cpu if k in summary_gpu and ".settings." not in f".{k}"
                and not k.startswith("settings.") and "seconds" not in k]
        checks = [(f"regions.tsv {name}", cpu[name], gpu[name]) for name in cpu if name in gpu]
        checks.append(("summary.json (every number)", np.array([summary_cpu[k] for k in keys]),
                       np.array([summary_gpu[k] for k in keys])))
        missing = sorted(set(cpu) ^ set(gpu)) + sorted(set(summary_cpu) ^ set(summary_gpu))
        print(f"{label}: {len(checks)} checks, tolerance {rtol:g} relative")
        for name, a, b in checks:
            relative, ok = worst(a, b, rtol)
            if not ok:
                failed += 1
            if not ok or name.startswith("summary"):
                print(f"  {'ok  ' if ok else 'FAIL'} {name}: largest relative difference {relative:.2e}")
        if missing:
            failed += 1
            print(f"  FAIL columns or keys on one device only: {', '.join(missing[:10])}")
    print("GPU == CPU on the fixture: " + ("yes" if not failed else f"NO ({failed} failed)"))
    return 1 if failed else 0


def case_files(case: Path) -> list:
    """The predictions, the truth files and ``--regions`` (where it has one) of a case from bench/make_case.py."""
    description = json.loads((case / "case.json").read_text())
    files = [str(case / description["files"]["predictions"])] + [str(case / t) for t in description["files"]["truth"]]
    if description["files"].get("regions"):
        files += ["--regions", str(case / description["files"]["regions"])]
    return files


def timing(case: Path, device: str, batch_size: int, all_case: Optional[Path] = None) -> int:
    """Compute alone (``run_bench.py --stage compute``) and ``score`` end to end, on the CPU and on ``device``; with
    ``all_case``, also ``score --no-plots --metrics all`` on that (smaller) case."""
    from run_bench import run_measured

    description = json.loads((case / "case.json").read_text())
    n = description["n_regions"]
    files = case_files(case)
    results = {}
    other = device if device != "cpu" else "cpu again"  # GPU_BENCH_DEVICE=cpu: the CPU twice (a check of this script)
    for label_device, where in (("cpu", "cpu"), (other, device)):
        stage = [sys.executable, str(BENCH / "run_bench.py"), "--stage", "compute", "--case", str(case),
                 "--regions", str(n), "--batch-size", str(batch_size), "--device", where]
        compute = run_measured(stage)
        compute_s = json.loads(compute["stdout"].strip().splitlines()[-1])["seconds"]
        ends = {}
        for label, extra in (("score", []), ("score --no-plots", ["--no-plots"])):
            command = [cli(), "score", *files, "--out", str(case.parent / f"report-{label_device.replace(' ', '-')}"),
                       "--quiet", "--device", where, "--batch-size", str(batch_size), *extra]
            ends[label] = run_measured(command)
        if all_case is not None:
            command = [cli(), "score", *case_files(all_case), "--out",
                       str(all_case.parent / f"report-all-{label_device.replace(' ', '-')}"), "--quiet", "--device",
                       where, "--batch-size", str(batch_size), "--no-plots", "--metrics", "all"]
            ends["score --metrics all"] = run_measured(command)
        results[label_device] = {"compute_s": compute_s, **{k: v["wall_s"] for k, v in ends.items()},
                                 "score_peak_rss_mb": ends["score"]["peak_rss_mb"]}
        print(f"  {label_device}: compute {compute_s:.2f} s in-process; score {ends['score']['wall_s']:.2f} s end to end, "
              f"--no-plots {ends['score --no-plots']['wall_s']:.2f} s"
              + (f", --metrics all {ends['score --metrics all']['wall_s']:.2f} s" if all_case else ""), flush=True)
    cpu, gpu = results["cpu"], results[other]
    print(f"\n{n} regions, {description['n_tracks']} track(s), L = {description['length']}, batch {batch_size}")
    print(f"{'':34s} {'cpu s':>8s} {other + ' s':>14s} {'cpu / ' + other:>16s}")
    rows = [("compute_s", "compute alone (in-process)"), ("score", "score end to end"),
            ("score --no-plots", "score --no-plots")]
    if all_case is not None:
        n_all = json.loads((all_case / "case.json").read_text())["n_regions"]
        rows.append(("score --metrics all", f"--metrics all ({n_all} regions)"))
    for key, label in rows:
        print(f"{label:34s} {cpu[key]:8.2f} {gpu[key]:14.2f} {cpu[key] / gpu[key]:16.2f}")
    (case.parent / "gpu_timing.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("equal", "timing"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, help="equal: where the fixture reports go")
    parser.add_argument("--case", type=Path, help="timing: a case directory from bench/make_case.py")
    parser.add_argument("--all-case", type=Path, help="timing: a case to time `--metrics all` on (smaller)")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    if args.step == "equal":
        sys.exit(equal(args.out, args.device))
    sys.exit(timing(args.case, args.device, args.batch_size, args.all_case))


if __name__ == "__main__":
    main()
