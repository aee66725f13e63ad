"""Memory does not grow with N: the peak memory of ``bpnet-eval score`` at 2,000 and 20,000 regions, both of its
largest process and of the whole run (the main process, its reading processes, the figures' painter and the
forked formatter of regions.tsv, as ``bench/measure.py`` measures a run for the benchmark)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.cases import write_bigwig, write_predictions
from tests.support.cli import CLI, REPO

pytestmark = pytest.mark.slow  # runs the CLI at 2,000 and 20,000 regions

LENGTH = 400
# One extra copy of the observed or predicted N x S x L array at 20k regions would add
# 18,000 * 2 * 400 * 4 bytes = 58 MB (float32) or 115 MB (float64); per-region columns,
# the region table and the report text add a few hundred bytes per region.
GROWTH_LIMIT_MB = 40
# The batches read ahead by worker processes fill a fixed budget (--read-ahead-mb, default 32 MB: it
# is full from 4 batches of 1024 x 2 x 1000 on); a small budget makes it full at both sizes here.
READ_AHEAD_MB = "8"
# How often bench/measure.py samples the run's process tree here: a run of these sizes takes ~1 s (the benchmark's
# 0.5 s would see it once or twice); reading /proc costs a few ms a process.
SAMPLE_INTERVAL_S = "0.05"


def measured_run(args) -> dict:
    """Run the CLI with ``args`` under ``bench/measure.py`` (a process of its own, so that neither pytest's pages nor
    an earlier run count): its ``peak_rss_mb`` (the largest process) and ``run_peak_mb`` (the process tree's PSS)."""
    env = dict(os.environ, MEASURE_INTERVAL_S=SAMPLE_INTERVAL_S)
    run = subprocess.run([sys.executable, str(REPO / "bench" / "measure.py"), str(CLI), *map(str, args)],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["returncode"] == 0, measured["stderr"]
    return measured


def test_peak_memory_is_flat_in_the_number_of_regions(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {"chr1": 3_000_000, "chr2": 2_000_000}
    bigwigs = [write_bigwig(tmp_path / f"obs{s}.bw", sizes,
                            {c: rng.poisson(0.05, n).astype(float) for c, n in sizes.items()}) for s in range(2)]
    largest, run = {}, {}
    for n, repeats in ((2_000, 2), (20_000, 1)):  # the smaller twice: a peak missed between samples there would
        chrom = np.where(rng.random(n) < 0.6, "chr1", "chr2").astype(object)  # look like growth
        start = np.array([rng.integers(0, sizes[c] - LENGTH) for c in chrom])
        logits = rng.normal(0, 1, (n, 2, LENGTH)).astype(np.float32)
        logcounts = rng.normal(3, 1, (n, 1)).astype(np.float32)
        predictions = write_predictions(tmp_path / f"p{n}.h5", logits, logcounts, chrom, start, start + LENGTH)
        runs = [measured_run(["score", predictions, *bigwigs, "--out", tmp_path / f"r{n}_{k}", "-q", "--device", "cpu",
                              "--read-ahead-mb", READ_AHEAD_MB]) for k in range(repeats)]
        largest[n] = max(r["peak_rss_mb"] for r in runs)
        run[n] = max(r["run_peak_mb"] for r in runs)
        assert (tmp_path / f"r{n}_0" / "summary.json").exists()
        assert (tmp_path / f"r{n}_0" / "profile_examples.png").exists()  # the painter ran, and counted
    assert run[2_000] > largest[2_000] + 10, (run, largest)  # the run's other processes were seen
    assert largest[20_000] - largest[2_000] < GROWTH_LIMIT_MB, largest
    assert run[20_000] - run[2_000] < GROWTH_LIMIT_MB, run
