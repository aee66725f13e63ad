"""Memory does not grow with N: peak RSS of ``bpnet-eval score`` at 2,000 and 20,000 regions."""

import subprocess
import sys

import numpy as np
import pytest

from tests.support.cases import write_bigwig, write_predictions
from tests.support.cli import CLI

pytestmark = pytest.mark.slow  # runs the CLI at 2,000 and 20,000 regions

LENGTH = 400
# One extra copy of the observed or predicted N x S x L array at 20k regions would add
# 18,000 * 2 * 400 * 4 bytes = 58 MB (float32) or 115 MB (float64); per-region columns,
# the region table and the report text add a few hundred bytes per region.
GROWTH_LIMIT_MB = 40
# The batches read ahead by worker processes fill a fixed budget (--read-ahead-mb, default 32 MB: it
# is full from 4 batches of 1024 x 2 x 1000 on); a small budget makes it full at both sizes here.
READ_AHEAD_MB = "8"


# A small interpreter starts the CLI and reports its peak RSS: a child forked straight from pytest
# would count pytest's own resident pages (copied at fork) in its ru_maxrss.
LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, status, usage = os.wait4(p.pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)")


def peak_rss_mb(args) -> float:
    """Run the CLI with ``args``; return its peak resident set size in MB."""
    run = subprocess.run([sys.executable, "-c", LAUNCHER, str(CLI), *map(str, args)], capture_output=True, text=True)
    code, maxrss = map(int, run.stdout.split())
    assert code == 0, run.stderr
    return maxrss / 1024 if sys.platform != "darwin" else maxrss / 2**20


def test_peak_memory_is_flat_in_the_number_of_regions(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {"chr1": 3_000_000, "chr2": 2_000_000}
    bigwigs = [write_bigwig(tmp_path / f"obs{s}.bw", sizes,
                            {c: rng.poisson(0.05, n).astype(float) for c, n in sizes.items()}) for s in range(2)]
    peaks = {}
    for n in (2_000, 20_000):
        chrom = np.where(rng.random(n) < 0.6, "chr1", "chr2").astype(object)
        start = np.array([rng.integers(0, sizes[c] - LENGTH) for c in chrom])
        logits = rng.normal(0, 1, (n, 2, LENGTH)).astype(np.float32)
        logcounts = rng.normal(3, 1, (n, 1)).astype(np.float32)
        predictions = write_predictions(tmp_path / f"p{n}.h5", logits, logcounts, chrom, start, start + LENGTH)
        peaks[n] = peak_rss_mb(["score", predictions, *bigwigs, "--out", tmp_path / f"r{n}", "-q", "--no-plots",
                                "--device", "cpu", "--read-ahead-mb", READ_AHEAD_MB])
        assert (tmp_path / f"r{n}" / "summary.json").exists()
    assert peaks[20_000] - peaks[2_000] < GROWTH_LIMIT_MB, peaks
