"""Generate the large realistic scoring case used by ``bench/run_bench.py``.

    python bench/make_case.py OUT_DIR [--regions 100000] [--length 1000] [--seed 0]

Writes into OUT_DIR:

* ``observed.plus.bw``, ``observed.minus.bw``: ChIP-like sparse integer 5'-end counts on a few
  chromosomes of tens of Mb (a thin Poisson background plus read piles around peak summits,
  the plus strand shifted upstream of the minus strand), stored as merged bedGraph runs;
* ``predictions.h5``: the native layout (``predictions/logits`` (N, 2, L) float32,
  ``predictions/logcounts`` (N, 1), ``coords/coords_{chrom,start,end,peak}``), chunked along
  regions with whole trailing axes (about 2 MB per chunk), uncompressed. Logits are the log of
  a smoothed copy of the observed signal plus noise, so predictions correlate with the truth;
* ``case.json``: what was generated.

Half of the regions are peaks (summit ± L/2, in the order of a score-sorted peak file, i.e.
not by position), half are background windows in position order, as in chrombpnet's
peaks-then-nonpeaks evaluation sets. Memory: about 16 bytes per chromosome base while
generating (about 2 GB at the default sizes); the predictions are written in chunks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pyBigWig

CHROM_SIZES_MB = (34, 30, 26, 22)  # a few chromosomes of tens of Mb
BACKGROUND_RATE = 0.01  # reads per base per strand away from peaks
STRAND_SHIFT = 20  # plus-strand reads pile up this far upstream of the summit, minus downstream
CHUNK_BYTES = 2 << 20


def chromosome_sizes(n_regions: int) -> dict:
    """Chromosome sizes: tens of Mb at 100,000 regions, scaled down with smaller cases (at least 5%)."""
    scale = min(1.0, max(n_regions / 100_000, 0.05))
    return {f"chr{i + 1}": int(mb * 1_000_000 * scale) for i, mb in enumerate(CHROM_SIZES_MB)}


def simulate_strands(size: int, summits: np.ndarray, rng) -> np.ndarray:
    """Integer counts ``(2, size)``: background plus reads scattered around each summit."""
    counts = np.empty((2, size), dtype=np.int32)
    reads_per_peak = np.round(rng.lognormal(5.0, 1.0, len(summits))).astype(np.int64) + 10
    for strand, shift in enumerate((-STRAND_SHIFT, STRAND_SHIFT)):
        centre = np.repeat(summits + shift, reads_per_peak // 2 + strand * (reads_per_peak % 2))
        ends = np.clip(np.round(centre + rng.normal(0.0, 40.0, len(centre))).astype(np.int64), 0, size - 1)
        background = rng.poisson(BACKGROUND_RATE * size)
        ends = np.concatenate([ends, rng.integers(0, size, background)])
        counts[strand] = np.bincount(ends, minlength=size)
    return counts


def smoothed(counts: np.ndarray, half_width: int = 25) -> np.ndarray:
    """A triangular moving average of ``counts`` along the last axis (float32)."""
    out = counts.astype(np.float32)
    for _ in range(2):
        padded = np.concatenate([np.zeros(counts.shape[:-1] + (half_width + 1,), np.float64),
                                 out.astype(np.float64), np.zeros(counts.shape[:-1] + (half_width,), np.float64)],
                                axis=-1)
        cumulative = np.cumsum(padded, axis=-1)
        width = 2 * half_width + 1
        out = ((cumulative[..., width:] - cumulative[..., :-width]) / width).astype(np.float32)
    return out


def write_strand_bigwig(path: Path, sizes: dict, counts_by_chrom: dict, strand: int) -> None:
    """One strand as a bigWig of merged runs of equal nonzero values (zeros left uncovered)."""
    with pyBigWig.open(str(path), "w") as bw:
        bw.addHeader(list(sizes.items()), maxZooms=4)
        for chrom in sizes:
            values = counts_by_chrom[chrom][strand]
            where = np.flatnonzero(values)
            if not len(where):
                continue
            new_run = np.ones(len(where), bool)
            new_run[1:] = (where[1:] != where[:-1] + 1) | (values[where[1:]] != values[where[:-1]])
            starts = where[new_run]
            run_index = np.cumsum(new_run) - 1
            ends = np.zeros(len(starts), np.int64)
            np.maximum.at(ends, run_index, where + 1)
            bw.addEntries([chrom] * len(starts), starts.tolist(), ends=ends.tolist(),
                          values=values[starts].astype(np.float64).tolist())


def choose_regions(sizes: dict, summits: dict, n_regions: int, length: int, rng):
    """Half peaks (summit ± L/2, score order), half background windows (position order)."""
    n_peaks = n_regions // 2
    peak_chrom, peak_start = [], []
    for chrom, points in summits.items():
        ok = points[(points - length // 2 >= 0) & (points - length // 2 + length <= sizes[chrom])]
        peak_chrom += [chrom] * len(ok)
        peak_start.append(ok - length // 2)
    peak_chrom = np.array(peak_chrom, dtype=object)
    peak_start = np.concatenate(peak_start)
    pick = rng.choice(len(peak_start), size=n_peaks, replace=len(peak_start) < n_peaks)
    names = list(sizes)
    weights = np.array([sizes[c] for c in names], dtype=np.float64)
    background_chrom = np.array(names, dtype=object)[rng.choice(len(names), n_regions - n_peaks, p=weights / weights.sum())]
    background_start = np.array([rng.integers(0, sizes[c] - length) for c in background_chrom], dtype=np.int64)
    order = np.lexsort((background_start, [names.index(c) for c in background_chrom]))
    chrom = np.concatenate([peak_chrom[pick], background_chrom[order]])
    start = np.concatenate([peak_start[pick], background_start[order]]).astype(np.int64)
    peak = np.concatenate([np.ones(n_peaks, np.int8), np.zeros(n_regions - n_peaks, np.int8)])
    return chrom, start, peak


def write_predictions(path: Path, chrom, start, peak, length: int, counts_by_chrom: dict,
                      smooth_by_chrom: dict, rng) -> int:
    """The native HDF5 layout, written chunk by chunk; returns the chunk size along regions."""
    n = len(start)
    chunk_regions = max(1, min(n, CHUNK_BYTES // (2 * length * 4)))
    offsets = np.arange(length)
    with h5py.File(path, "w") as h5:
        logits_ds = h5.create_dataset("predictions/logits", shape=(n, 2, length), dtype=np.float32,
                                      chunks=(chunk_regions, 2, length))
        logcounts_ds = h5.create_dataset("predictions/logcounts", shape=(n, 1), dtype=np.float32,
                                         chunks=(min(n, 65536), 1))
        for i in range(0, n, chunk_regions):
            j = min(n, i + chunk_regions)
            observed = np.empty((j - i, 2, length), np.float32)
            profile = np.empty((j - i, 2, length), np.float32)
            for r in range(i, j):
                window = start[r] + offsets
                observed[r - i] = counts_by_chrom[chrom[r]][:, window]
                profile[r - i] = smooth_by_chrom[chrom[r]][:, window]
            noise = rng.normal(0.0, 0.3, profile.shape).astype(np.float32)
            logits_ds[i:j] = np.log(profile + 0.05) + noise + 3.0
            total = observed.sum(axis=(1, 2))
            logcounts_ds[i:j] = (np.log1p(total) + rng.normal(0.0, 0.4, total.shape))[:, None].astype(np.float32)
        string = h5py.string_dtype()
        h5.create_dataset("coords/coords_chrom", data=np.asarray(chrom, dtype=object), dtype=string)
        h5.create_dataset("coords/coords_start", data=start)
        h5.create_dataset("coords/coords_end", data=start + length)
        h5.create_dataset("coords/coords_peak", data=peak)
    return chunk_regions


def make_case(out_dir, n_regions: int = 100_000, length: int = 1000, seed: int = 0, quiet: bool = False) -> dict:
    """Write the case into ``out_dir``; return its description (also saved as ``case.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    sizes = chromosome_sizes(n_regions)
    genome = sum(sizes.values())
    n_summits = int(n_regions * 0.6) + 10
    summits, counts, smooth = {}, {}, {}
    for chrom, size in sizes.items():
        k = max(2, int(round(n_summits * size / genome)))
        summits[chrom] = np.sort(rng.integers(length, size - length, k))
        counts[chrom] = simulate_strands(size, summits[chrom], rng)
        smooth[chrom] = smoothed(counts[chrom])
    for strand, name in enumerate(("plus", "minus")):
        write_strand_bigwig(out / f"observed.{name}.bw", sizes, counts, strand)
    chrom, start, peak = choose_regions(sizes, summits, n_regions, length, rng)
    chunk = write_predictions(out / "predictions.h5", chrom, start, peak, length, counts, smooth, rng)
    description = {"n_regions": n_regions, "length": length, "n_tracks": 2, "seed": seed,
                   "chrom_sizes": sizes, "predictions_chunk_regions": chunk,
                   "files": {"predictions": "predictions.h5", "truth": ["observed.plus.bw", "observed.minus.bw"]},
                   "generation_s": round(time.perf_counter() - began, 1)}
    (out / "case.json").write_text(json.dumps(description, indent=2) + "\n")
    if not quiet:
        print(f"made {out}: {n_regions} regions, L = {length}, {len(sizes)} chromosomes "
              f"({genome / 1e6:.0f} Mb) in {description['generation_s']} s")
    return description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_case(args.out_dir, args.regions, args.length, args.seed)


if __name__ == "__main__":
    main()
