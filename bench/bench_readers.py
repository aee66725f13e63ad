"""Micro-benchmark: pyBigWig per-window loop vs bpnet_eval's BigWigReader.

    python bench/bench_readers.py                 # makes a sparse ChIP-like bigWig in a temp dir
    python bench/bench_readers.py --bigwig X.bw   # or use an existing file

Reports windows/s for random and for peak-centred windows: one call with all
windows, and batches of --batch windows in prediction order (unsorted). "cold"
runs open a fresh reader, so they include opening the file and decoding blocks;
"warm" runs reuse a reader that has read the same windows before.
Clean files are decoded whole ("resident": on the first read with at most 8 MB of
compressed data, else once reads touch a quarter of their blocks, if they fit in
128 MB); other files are read block by block with an LRU cache ("streaming"),
which is timed too by forcing it on the same file. Checks that all readers
return identical values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyBigWig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bpnet_eval.sources import bigwig  # noqa: E402
from bpnet_eval.sources.bigwig import BigWigReader  # noqa: E402


def make_chip_like(path: Path, n_chroms: int, chrom_len: int, seed: int) -> dict[str, np.ndarray]:
    """Sparse integer counts: a thin background plus read piles around peaks. Returns peak summits."""
    rng = np.random.default_rng(seed)
    bw = pyBigWig.open(str(path), "w")
    names = [f"chr{i + 1}" for i in range(n_chroms)]
    bw.addHeader([(c, chrom_len) for c in names])
    summits = {}
    for name in names:
        counts = rng.poisson(0.005, chrom_len).astype(np.int32)
        peaks = np.sort(rng.integers(1000, chrom_len - 1000, chrom_len // 10_000))
        for p in peaks:  # reads' 5' ends scattered around each summit
            ends = (p + rng.normal(0, 60, rng.integers(50, 600))).astype(np.int64)
            np.add.at(counts, ends, 1)
        summits[name] = peaks
        pos = np.flatnonzero(counts)
        # merge runs of equal adjacent values into one bedGraph interval
        new = np.ones(len(pos), bool)
        new[1:] = (pos[1:] != pos[:-1] + 1) | (counts[pos[1:]] != counts[pos[:-1]])
        run = np.cumsum(new) - 1
        starts = pos[new]
        ends = np.zeros(len(starts), np.int64)
        np.maximum.at(ends, run, pos + 1)
        vals = counts[starts].astype(np.float64)
        bw.addEntries([name] * len(starts), starts.tolist(), ends=ends.tolist(), values=vals.tolist())
    bw.close()
    return summits


def windows(sizes: dict[str, int], n: int, width: int, rng, summits=None):
    names = list(sizes)
    pick = rng.integers(0, len(names), n)
    chroms = [names[i] for i in pick]
    if summits is None:
        starts = np.array([rng.integers(0, sizes[c] - width + 1) for c in chroms])
    else:
        centre = np.array([rng.choice(summits[c]) for c in chroms]) + rng.integers(-200, 201, n)
        starts = np.clip(centre - width // 2, 0, np.array([sizes[c] - width for c in chroms]))
    return chroms, starts.astype(np.int64), starts.astype(np.int64) + width


def pybigwig_loop(path, chroms, starts, ends, dest):
    bw = pyBigWig.open(str(path))
    for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
        dest[i] = bw.values(c, s, e, numpy=True)
    bw.close()
    return np.nan_to_num(dest, nan=0.0, copy=False)


def open_reader(path, streaming: bool) -> BigWigReader:
    limits = bigwig._RESIDENT_COMPRESSED_BYTES, bigwig._RESIDENT_AFTER_SHARE
    if streaming:  # read block by block, as for files too big to keep whole
        bigwig._RESIDENT_COMPRESSED_BYTES, bigwig._RESIDENT_AFTER_SHARE = -1, 2.0
    try:
        return BigWigReader(str(path))
    finally:
        bigwig._RESIDENT_COMPRESSED_BYTES, bigwig._RESIDENT_AFTER_SHARE = limits


def read_all(reader, chroms, starts, ends, batch, dest):
    if batch is None:
        return reader.read(chroms, starts, ends, out=dest)
    for i in range(0, len(chroms), batch):
        reader.read(chroms[i:i + batch], starts[i:i + batch], ends[i:i + batch], out=dest[i:i + batch])
    return dest


def cold(path, streaming, *args):
    with open_reader(path, streaming) as reader:
        return read_all(reader, *args)


def timed(fn, *args, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bigwig", type=Path, help="existing bigWig (default: generate one)")
    ap.add_argument("--chroms", type=int, default=3)
    ap.add_argument("--chrom-len", type=int, default=30_000_000)
    ap.add_argument("-n", type=int, default=100_000, help="windows per scenario")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast reader (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    summits = None
    path = args.bigwig
    if path is None:
        path = Path(tmp.name) / "chip_like.bw"
        t = time.perf_counter()
        summits = make_chip_like(path, args.chroms, args.chrom_len, args.seed)
        print(f"made {path.name}: {args.chroms} x {args.chrom_len / 1e6:.0f} Mb, "
              f"{path.stat().st_size / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s")
    with pyBigWig.open(str(path)) as bw:
        sizes = bw.chroms()
        print(f"bigWig: {path} ({bw.header()['nBasesCovered']} bases covered)")
    rng = np.random.default_rng(args.seed + 1)
    scenarios = {"random": windows(sizes, args.n, args.width, rng)}
    if summits is not None:
        scenarios["peak-centred"] = windows(sizes, args.n, args.width, rng, summits)

    print(f"{args.n} windows of {args.width} bp; windows/s (ratio to the pyBigWig loop)")
    for label, (chroms, starts, ends) in scenarios.items():
        n = len(chroms)
        dest = np.zeros((n, args.width), dtype=np.float32)  # preallocated: time reading, not page faults
        t_ref = timed(pybigwig_loop, path, chroms, starts, ends, dest)
        ref = dest.copy()
        print(f"  {label:13s} pyBigWig values() loop                 {n / t_ref:>9,.0f}/s")
        for mode, streaming in (("resident", False), ("streaming", True)):
            warm_reader = open_reader(path, streaming)
            rows = [("1 call, cold", cold, (path, streaming, chroms, starts, ends, None, dest)),
                    (f"batches of {args.batch}, cold", cold, (path, streaming, chroms, starts, ends, args.batch, dest)),
                    (f"batches of {args.batch}, warm", read_all, (warm_reader, chroms, starts, ends, args.batch, dest))]
            for how, fn, fn_args in rows:
                dest[:] = np.nan
                t = timed(fn, *fn_args, repeat=args.repeat)
                if not np.array_equal(ref, dest):
                    raise SystemExit(f"MISMATCH between readers: {label}, {mode}, {how}")
                print(f"  {label:13s} BigWigReader {mode:9s} {how:24s} {n / t:>9,.0f}/s  ({t_ref / t:.1f}x)")
            warm_reader.close()


if __name__ == "__main__":
    main()
