"""Observed tracks: one bigWig per predicted track, or one HDF5 dataset of counts.

Every source answers ``read(i, j)`` with observed counts ``(b, S, L)`` as float32, uncovered
bases as 0, in track order.
"""

from typing import Optional, Sequence

import numpy as np

from ..errors import InputError, UsageError
from ..regions import Regions
from .bigwig import BigWigReader
from .hdf5 import dataset_or_none, list_datasets, open_hdf5
from .predictions import profile_axes, to_nsl

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
TRUTH_DATASET_NAMES = ("observed/counts", "observed", "counts", "true_counts", "y", "obs")


def check_windows_in(chrom_sizes: dict, regions: Regions, path: str) -> None:
    """Raise unless every window's chromosome is in ``chrom_sizes`` and the window lies inside it."""
    sizes = np.array([chrom_sizes.get(c, -1) for c in regions.chrom], dtype=np.int64)
    missing = np.flatnonzero(sizes < 0)
    if len(missing):
        i = int(missing[0])
        absent = sorted(set(regions.chrom[missing]))
        raise InputError(f"{path}: chromosome '{regions.chrom[i]}' of {regions.label(i)} is not in this bigWig "
                         f"({len(absent)} chromosome(s) missing: {', '.join(absent[:5])}); check that the bigWig "
                         "and the regions use the same genome and chromosome names")
    outside = np.flatnonzero((regions.start < 0) | (regions.end > sizes))
    if len(outside):
        i = int(outside[0])
        raise InputError(f"{path}: {regions.label(i)} lies outside {regions.chrom[i]} (length {sizes[i]}); "
                         f"{len(outside)} window(s) run off a chromosome end; drop or move those regions")


class BigWigTruth:
    """Observed counts from one bigWig per track (stranded: plus, then minus)."""

    def __init__(self, paths: Sequence[str], regions: Regions):
        self.paths = [str(p) for p in paths]
        self.regions = regions
        self._readers = [BigWigReader(p) for p in self.paths]
        self.n_tracks = len(self._readers)

    def validate(self) -> None:
        """Raise unless every window is readable from every bigWig."""
        for reader in self._readers:
            check_windows_in(reader.chrom_sizes, self.regions, reader.path)

    def describe(self) -> dict:
        return {"kind": "bigWig", "paths": self.paths}

    def read(self, i: int, j: int) -> np.ndarray:
        rows = self.regions.subset(slice(i, j))
        out = np.empty((j - i, self.n_tracks, int(rows.end[0] - rows.start[0]) if j > i else 0), dtype=np.float32)
        for s, reader in enumerate(self._readers):
            out[:, s, :] = reader.read(rows.chrom, rows.start, rows.end)
        return out

    def close(self):
        for reader in self._readers:
            reader.close()


class HDF5Truth:
    """Observed counts from one HDF5 dataset ``(N, S, L)``, ``(N, L, S)`` or ``(N, L)``."""

    def __init__(self, path: str, dataset: Optional[str] = None):
        self.path = str(path)
        self._file = open_hdf5(self.path)
        self.dataset = dataset or self._find_dataset()
        self._data = dataset_or_none(self._file, self.dataset)
        if self._data is None:
            raise InputError(f"{self.path}: no dataset '{self.dataset}'; name the observed counts with --truth-dataset")
        if self._data.ndim not in (2, 3):
            raise InputError(f"{self.path}: '{self.dataset}' has shape {self._data.shape}; expected (N, L), "
                             "(N, S, L) or (N, L, S) observed counts")
        self._axes = profile_axes(self._data.shape, None)
        self.n = self._data.shape[0]
        self.n_tracks = 1 if self._axes == "NL" else self._data.shape[1 if self._axes == "NSL" else 2]
        self.length = self._data.shape[1] if self._axes == "NLS" else self._data.shape[-1]

    def _find_dataset(self) -> str:
        for name in TRUTH_DATASET_NAMES:
            if dataset_or_none(self._file, name) is not None:
                return name
        candidates = [n for n in list_datasets(self._file) if self._file[n].ndim in (2, 3)]
        if len(candidates) == 1:
            return candidates[0]
        raise UsageError(f"{self.path}: cannot tell which dataset holds the observed counts "
                         f"(candidates: {', '.join(candidates) or 'none'}); name it with --truth-dataset")

    def validate(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": "HDF5", "paths": [self.path], "dataset": self.dataset}

    def read(self, i: int, j: int) -> np.ndarray:
        return np.nan_to_num(to_nsl(np.asarray(self._data[i:j], dtype=np.float32), self._axes), nan=0.0)

    def close(self):
        self._file.close()


class ArrayTruth:
    """Observed counts held in memory, ``(N, L)`` or ``(N, S, L)``."""

    def __init__(self, observed):
        observed = np.asarray(observed)
        self._data = observed[:, None, :] if observed.ndim == 2 else observed
        if self._data.ndim != 3:
            raise UsageError(f"observed counts have shape {observed.shape}; expected (N, L) or (N, S, L)")
        self.n, self.n_tracks, self.length = self._data.shape
        self.path = "<array>"

    def validate(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": "arrays", "paths": []}

    def read(self, i: int, j: int) -> np.ndarray:
        return np.nan_to_num(self._data[i:j], nan=0.0)

    def close(self):
        pass


def open_truth(paths: Sequence[str], regions: Optional[Regions], dataset: Optional[str] = None):
    """A truth source for ``paths``: one HDF5 file, or one bigWig per track (needs regions)."""
    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError("give at least one TRUTH file: one bigWig per predicted track, or one HDF5 file")
    if len(paths) == 1 and paths[0].lower().endswith(HDF5_SUFFIXES):
        return HDF5Truth(paths[0], dataset)
    hdf5 = [p for p in paths if p.lower().endswith(HDF5_SUFFIXES)]
    if hdf5:
        raise UsageError(f"{hdf5[0]}: give either one HDF5 TRUTH file or bigWigs, not both")
    if regions is None:
        raise UsageError(f"{paths[0]}: reading bigWigs needs regions, and the predictions store no coordinates; "
                         "give them with --regions BED")
    return BigWigTruth(paths, regions)
