"""Pool passes of the benchmark into one table of shapes: the host's speed drifts within a pass (stop 55: `chip`'s
`score` took 4.4-5.8 s in one pass and 3.7 s in the next), so the README's table pools two.

    python bench/run_bench.py --cases /tmp/cases --shapes all ... --json pass1.json
    python bench/run_bench.py --cases /tmp/cases --shapes all ... --json pass2.json
    python bench/pool_passes.py pass1.json pass2.json [--json pooled.json]

Each stage's wall time is the median of all its runs in every pass; the naive pipelines', which the passes keep only
as scaled medians, the mean of the passes'; the parallel floor the faster of its two splits (a pass from before they
were split, whose floor dealt batches, counts as that split); memory the highest of any run. Below the table, the
ratios round by round (``run_bench.rounds``: runs of both stages a minute or two apart) of every pass that has them:
their lowest, median and highest, which show how far the host's drift moves a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import NAIVE_STAGES, PARALLEL_FLOORS, print_shape_table  # noqa: E402


def _split_stages(result: dict) -> dict:
    """A pass's stages of one shape, its parallel floor under the split it was measured by."""
    stages = dict(result["stages"])
    parallel = stages.pop("floor_parallel", None)
    if parallel is not None and not any(stage in stages for stage in PARALLEL_FLOORS):
        stages["floor_parallel_batches"] = parallel
    return stages


def pooled(passes: list) -> dict:
    """``{shape: result}`` as ``print_shape_table`` takes it, from the shapes of the first pass and every pass that
    measured them (each ``{shape: run_bench report}``)."""
    out = {}
    for shape in passes[0]:
        results = [p[shape] for p in passes if shape in p]
        per_pass = [_split_stages(r) for r in results]
        stages, walls = {}, {}
        for stage in dict.fromkeys(name for stages_of in per_pass for name in stages_of):
            measured = [s[stage] for s in per_pass if stage in s]
            runs = [wall for m in measured for wall in m["walls_s"]]
            walls[stage] = (statistics.mean(r["walls_s"][stage] for r in results if stage in r["walls_s"])
                            if stage in NAIVE_STAGES else statistics.median(runs))
            stages[stage] = {**measured[0], "walls_s": runs, "wall_s": walls[stage],
                             "peak_rss_mb": max(m["peak_rss_mb"] for m in measured),
                             "run_peak_mb": max(m["run_peak_mb"] for m in measured)}
        splits = [stage for stage in PARALLEL_FLOORS if stage in stages]
        if splits:
            fastest = min(splits, key=lambda stage: walls[stage])
            stages["floor_parallel"], walls["floor_parallel"] = stages[fastest], walls[fastest]
        paired = {}
        for result in results:
            for label, each in result.get("paired_ratios", {}).items():
                paired.setdefault(label, []).extend(each)
        out[shape] = {"case": results[0]["case"], "walls_s": walls, "stages": stages, "passes": len(results),
                      "paired_ratios": paired}
    return out


# the ratios whose round-by-round range is printed below the table
PAIRED_COLUMNS = {"naive_seed / score (target >= 10)": "naive seed / score", "score / floor_parallel (target <= 1.5)":
                  "score / floor ×P"}


def print_paired_ranges(table: dict) -> None:
    """Per shape, each ``PAIRED_COLUMNS`` ratio's lowest, median and highest round (markdown); nothing where no pass
    has them (passes from before stop 56)."""
    if not any(r.get("paired_ratios") for r in table.values()):
        return
    print()
    print("| shape | " + " | ".join(f"{name}, round by round: lowest, median, highest (rounds)"
                                    for name in PAIRED_COLUMNS.values()) + " |")
    print("|---|" + "---:|" * len(PAIRED_COLUMNS))
    for shape, r in table.items():
        cells = []
        for label in PAIRED_COLUMNS:
            each = r.get("paired_ratios", {}).get(label, [])
            cells.append(f"{min(each):.1f}, {statistics.median(each):.1f}, {max(each):.1f} ({len(each)})" if each
                         else "not run")
        print(f"| `{shape}` | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("passes", nargs="+", type=Path, help="run_bench.py --json files of --cases runs")
    parser.add_argument("--json", type=Path, help="also write the pooled numbers here")
    args = parser.parse_args()
    table = pooled([json.loads(path.read_text()) for path in args.passes])
    print_shape_table(table)
    print_paired_ranges(table)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
