"""Real bigWig and HDF5 files written with pyBigWig/h5py, and generated scoring cases."""

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pyBigWig


def write_bigwig(path, chrom_sizes: dict, tracks: dict):
    """A bigWig with per-base values: ``tracks[chrom]`` is a float array over the whole chromosome
    (zeros are left uncovered, so they read back as NaN → 0, as in real sparse files)."""
    with pyBigWig.open(str(path), "w") as bw:
        bw.addHeader(list(chrom_sizes.items()))
        for chrom in chrom_sizes:
            values = tracks.get(chrom)
            if values is None:
                continue
            where = np.flatnonzero(values)
            if len(where):
                bw.addEntries(chrom, where.tolist(), values=values[where].astype(float).tolist(), span=1)
    return Path(path)


def write_window_tracks(tmp_path, case, values, prefix="pred"):
    """Per-track bigWigs holding ``values[i, s]`` over region i of ``case`` (zeros left uncovered): predicted
    bigWigs as a peer writes them, one per track."""
    paths = []
    for s in range(values.shape[1]):
        per_chrom = {c: np.zeros(size) for c, size in case.chrom_sizes.items()}
        for i in range(len(case.chrom)):
            per_chrom[case.chrom[i]][case.start[i]:case.end[i]] = values[i, s]
        paths.append(str(write_bigwig(tmp_path / f"{prefix}.{s}.bw", case.chrom_sizes, per_chrom)))
    return paths


def write_predictions(path, logits, logcounts, chrom=None, start=None, end=None, layout="native", peak=None):
    """Predictions in a peer's HDF5 layout.

    layout: ``native`` (predictions/logits + coords_start/end), ``dset`` (coords_*_dset names),
    ``chrombpnet`` (predictions/profs probabilities per track + coords_center; (N, L) when S = 1),
    ``bpreveal`` (head_0/logits (N, L, S), chrom_names + index), ``nocoords``.
    """
    with h5py.File(path, "w") as h5:
        string = h5py.string_dtype()
        if layout == "bpreveal":
            names = sorted(set(chrom))
            h5.create_dataset("chrom_names", data=np.array(names, dtype=object), dtype=string)
            h5.create_dataset("coords_chrom", data=np.array([names.index(c) for c in chrom], dtype=np.int16))
            h5.create_dataset("coords_start", data=np.asarray(start))
            h5.create_dataset("coords_stop", data=np.asarray(end))
            h5.create_dataset("head_0/logits", data=np.swapaxes(np.asarray(logits), 1, 2))
            h5.create_dataset("head_0/logcounts", data=np.asarray(logcounts).reshape(-1))
            return Path(path)
        if layout == "chrombpnet":
            shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
            probs = shifted / shifted.sum(axis=-1, keepdims=True)
            h5.create_dataset("predictions/profs", data=probs[:, 0] if probs.shape[1] == 1 else probs)
        else:
            h5.create_dataset("predictions/logits", data=logits)
        h5.create_dataset("predictions/logcounts", data=logcounts)
        if layout == "nocoords" or chrom is None:
            return Path(path)
        h5.create_dataset("coords/coords_chrom", data=np.array(chrom, dtype=object), dtype=string)
        if layout == "chrombpnet":
            h5.create_dataset("coords/coords_center", data=(np.asarray(start) + np.asarray(end)) // 2)
        else:
            suffix = "_dset" if layout == "dset" else ""
            h5.create_dataset(f"coords/coords_start{suffix}", data=np.asarray(start))
            h5.create_dataset(f"coords/coords_end{suffix}", data=np.asarray(end))
        if peak is not None:
            h5.create_dataset("coords/coords_peak", data=np.asarray(peak, dtype=np.int8))
    return Path(path)


@dataclass
class Case:
    """A generated scoring case: arrays and the files that hold them."""

    logits: np.ndarray        # (N, S, L)
    logcounts: np.ndarray     # (N, 1) or (N, S)
    observed: np.ndarray      # (N, S, L) integer-valued floats
    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    predictions: Path
    bigwigs: list
    chrom_sizes: dict


def make_case(tmp_path, n=40, n_tracks=2, length=50, per_track_logcounts=False, layout="native", seed=0,
              zero_rows=(1, 7), large_rows=(3,), peak=None, name="preds.h5"):
    """Random but realistic data: sparse integer counts (with all-zero regions and very large counts),
    unnormalised logits, windows on two chromosomes, written as bigWigs + predictions HDF5."""
    rng = np.random.default_rng(seed)
    chrom_sizes = {"chr1": 40 * length * n, "chr2": 30 * length * n}
    chrom = np.array(["chr1" if i % 3 else "chr2" for i in range(n)], dtype=object)
    start = np.zeros(n, dtype=np.int64)
    for c in chrom_sizes:
        rows = np.flatnonzero(chrom == c)
        start[rows] = np.sort(rng.choice(chrom_sizes[c] // (2 * length) - 1, size=len(rows), replace=False)) * 2 * length
    end = start + length
    observed = rng.poisson(rng.gamma(0.3, 2.0, size=(n, n_tracks, length))).astype(np.float64)
    for i in zero_rows:
        if i < n:
            observed[i] = 0
    for i in large_rows:
        if i < n:
            observed[i] = rng.poisson(5000.0, size=(n_tracks, length))
    logits = (np.log(observed + 0.5) + rng.normal(0, 1.0, size=observed.shape) + 7.0).astype(np.float32)
    totals = observed.sum(axis=-1) if per_track_logcounts else observed.sum(axis=(1, 2))[:, None]
    logcounts = (np.log1p(totals) + rng.normal(0, 0.5, size=totals.shape)).astype(np.float32)
    tracks = []
    for s in range(n_tracks):
        per_chrom = {c: np.zeros(size) for c, size in chrom_sizes.items()}
        for i in range(n):
            per_chrom[chrom[i]][start[i]:end[i]] = observed[i, s]
        tracks.append(write_bigwig(tmp_path / f"obs{s}.bw", chrom_sizes, per_chrom))
    predictions = write_predictions(tmp_path / name, logits, logcounts, chrom, start, end, layout, peak)
    return Case(logits, logcounts, observed, chrom, start, end, predictions, tracks, chrom_sizes)
