"""Observed tracks: one bigWig per predicted track, or one HDF5 dataset of counts.

Every source answers ``read(i, j)`` with observed counts ``(b, S, L)`` as float32, uncovered
bases as 0, in track order; a value stored as NaN or inf (HDF5, arrays, an inf in a bigWig) is returned
as it is, for ``validate.ValueScreen`` and ``--nonfinite``. Complex or non-numeric datasets are refused when
opened.
"""

import copy
from typing import Optional, Sequence

import numpy as np

from ..environment import allotted_cpus
from ..errors import InputError, UsageError
from ..regions import Regions
from .base import ReadPlan, TruthSource
from .bigwig import BigWigReader, DecodedBeside
from .chunks import rows_reader
from .genome_order import WindowsInGenomeOrder
from .hdf5 import damaged, dataset_or_none, list_datasets, open_hdf5
from .predictions import profile_axes, require_numeric, to_nsl

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
# basepairmodels / bpnet 2.0 predict store the observed profiles beside the predictions (predictions/true_profs)
TRUTH_DATASET_NAMES = ("observed/counts", "observed", "counts", "true_counts", "y", "obs", "predictions/true_profs")


def negative_track_note(path: str, what: str) -> str:
    """The note for a bigWig whose values are all <= 0, read as magnitudes."""
    return (f"{path}: every {what} value is <= 0 (its header's summary), as minus strands are often stored "
            "(PRO-seq/GRO-seq tracks, BPReveal predictToBigwig --negate, BPNet export-bw --flip-negative-strand): "
            "read as magnitudes |v|")


class BigWigTruth(TruthSource):
    """Observed counts from one bigWig per track (stranded: plus, then minus), read over ``regions``.

    A bigWig whose values are all <= 0 (its header's whole-file summary says so: a minus strand stored as
    negative values) is read as magnitudes ``|v|``; a file holding both signs is read as it is (its negative
    values are then an error naming the file and the region, in ``validate.ValueScreen``).

    ``planned(plan)`` (validation's ``ReadPlan``) gives the reader of each file's chromosome names, the rows
    not read (skipped: zeros) and the rows read clipped to the chromosome (padded with zeros).
    """

    forkable = True

    def __init__(self, paths: Sequence[str], regions: Regions):
        self.paths = [str(p) for p in paths]
        self.regions = regions
        self._decoding = DecodedBeside({})  # files decoded by processes beside this one: ``start_reading``
        self._in_genome_order = {}  # track → its windows read in genome order (``start_reading``)
        self._readers = []
        for p in self.paths:
            try:
                self._readers.append(BigWigReader(p))
            except InputError:
                self.close()
                raise
        self.n_tracks = len(self._readers)
        self._negated = [s for s, reader in enumerate(self._readers) if reader.stored_as_negative()]
        self._chroms = [regions.chrom] * self.n_tracks
        self._ids = None  # read_into's chromosome numbers of every region, per file
        self._special = {}  # row → "skip" or "pad"
        self._rows = slice(0, 0)  # the rows this process reads batch by batch (``will_read``): none until told

    def bigwig_readers(self) -> list:
        return list(self._readers)

    def will_read(self, start: int, stop: int) -> None:
        """As ``TruthSource.will_read``; told no rows, the files forget the run's windows (``reads_blocks`` told them
        before the reading processes were forked: those keep them)."""
        self._rows = slice(start, stop)
        if stop <= start:
            for reader in self._readers:
                reader.forget_windows()

    def reads_blocks(self) -> bool:
        """Whether a file, told the windows of the rows of ``will_read``, is read block by block (too big to keep, even
        where the windows lie: ``BigWigReader.reads_blocks``); a process forked after this keeps what the files
        learnt."""
        for s in range(self.n_tracks):
            self._chrom_ids(s)  # tells file s the windows (``BigWigReader.expect``)
        return any(reader.reads_blocks() for reader in self._readers)

    def chrom_sizes(self) -> list:
        """``{chromosome: length}`` of each bigWig, in track order."""
        return [reader.chrom_sizes for reader in self._readers]

    def planned(self, plan: ReadPlan) -> "BigWigTruth":
        """A reader of the same files (sharing their descriptors) that reads as ``plan`` says."""
        view = copy.copy(self)
        view._ids, view._decoding, view._in_genome_order = None, DecodedBeside({}), {}
        if plan.chrom_names:
            view._chroms = [np.asarray(c, dtype=object) for c in plan.chrom_names]
        view._special = {**{int(i): "pad" for i in plan.pad_rows}, **{int(i): "skip" for i in plan.skip_rows}}
        return view

    def describe(self) -> dict:
        negated = [self.paths[s] for s in self._negated]
        return {"kind": "bigWig", "paths": self.paths, "read_as_magnitudes": negated,
                "notes": [negative_track_note(p, "observed") for p in negated]}

    def read(self, i: int, j: int) -> np.ndarray:
        start, end = self.regions.start[i:j], self.regions.end[i:j]
        out = np.zeros((j - i, self.n_tracks, int(end[0] - start[0]) if j > i else 0), dtype=np.float32)
        special = [k for k in range(j - i) if i + k in self._special] if self._special else []
        plain = np.setdiff1d(np.arange(j - i), special) if special else slice(None)
        for s, reader in enumerate(self._readers):
            self._chrom_ids(s)  # the first read tells the file the run's windows
            chroms = self._chroms[s][i:j]
            out[plain, s, :] = reader.read(chroms[plain], start[plain], end[plain])
            for k in special:
                if self._special[i + k] == "pad":
                    out[k, s] = reader.read_clipped(chroms[k], int(start[k]), int(end[k]))
        for s in self._negated:  # every value <= 0: |v| (no -0.0)
            np.abs(out[:, s], out=out[:, s])
        return out

    def read_into(self, i: int, j: int, out: np.ndarray, tracks: Optional[Sequence[int]] = None) -> None:
        """``read(i, j)`` (of ``tracks`` only: their files alone are read) written into ``out`` ``(j-i, S, L)`` (a
        reading process's shared memory): each track's rows written where they lie there (rows ``S * L`` values
        apart), not read, gathered and copied again."""
        if self._special and any(i + k in self._special for k in range(j - i)):
            super().read_into(i, j, out, tracks)
            return
        for s in range(self.n_tracks) if tracks is None else tracks:
            ids = self._chrom_ids(s)[i:j]  # only for the files this process reads
            chroms = ids if len(ids) and ids.min() >= 0 else self._chroms[s][i:j]  # names: an unknown one is named
            self._read_track_into(s, i, j, chroms, out[:, s])
            if s in self._negated:  # every value <= 0: |v| (no -0.0)
                np.abs(out[:, s], out=out[:, s])

    def _read_track_into(self, s: int, i: int, j: int, chroms, into: np.ndarray) -> None:
        """Track ``s``'s windows of rows ``i..j`` (on ``chroms``) into ``into``: from the copy in genome order
        ``start_reading`` wrote, or from the file."""
        if s in self._in_genome_order:
            self._in_genome_order[s].read_into(i, j, into)
        else:
            self._readers[s].read(chroms, self.regions.start[i:j], self.regions.end[i:j], out=into)

    def start_reading(self, tracks: Optional[Sequence[int]] = None, fork=None) -> None:
        """In a reading process, before its first batch: of the files of ``tracks`` (default all) that its first read
        decodes whole (``BigWigReader.decodes_whole_next``), this process decodes its share (the first of every as
        many as CPUs allotted) and each other one is decoded into shared memory (a memfd) by a call of its own in a
        process forked beside (``fork(call, what)``: ``workers.ForkedCall``; as many at once as CPUs allotted, but
        this one: ``bigwig.DecodedBeside``), taken from there at its first read. The same values; where that process
        fails, or without ``fork`` or memfds, the read decodes the file, as before."""
        tracks = list(range(self.n_tracks) if tracks is None else tracks)
        for s in tracks:
            self._chrom_ids(s)  # tells each file the run's windows (``expect``), before a process is forked
        # a SLURM allocation or a container's CPU quota, not only the affinity mask
        self._decoding = DecodedBeside({s: self._readers[s] for s in tracks}, fork, allotted_cpus())
        for s in tracks:  # files read block by block, their windows out of genome order: read once in that order
            if s not in self._decoding and self._readers[s].reads_blocks():
                self._write_in_genome_order(s)

    def _write_in_genome_order(self, s: int) -> None:
        """File ``s``'s windows of the rows of ``will_read`` (but the padded and skipped ones) read in genome order into
        a temporary file (``genome_order.WindowsInGenomeOrder``) where they are out of order and it has room."""
        rows = np.arange(len(self.regions.start))[self._rows]
        rows = rows[~np.isin(rows, list(self._special))] if self._special else rows
        ids = self._chrom_ids(s)[rows]
        if not len(rows) or ids.min() < 0:
            return
        written = WindowsInGenomeOrder.written(self._readers[s], self._rows.start, rows, ids,
                                               self.regions.start[rows], self.regions.end[rows])
        if written is not None:
            self._in_genome_order[s] = written

    def _chrom_ids(self, s: int) -> np.ndarray:
        """File ``s``'s chromosome number of every region, found once (not per batch), when the file is also told
        the windows the run reads (``BigWigReader.expect``: the rows of ``will_read`` but the padded and skipped
        ones, read otherwise)."""
        if s in self._decoding:
            self._decoding.adopt(s, self._readers[s])
        if self._ids is None:
            self._ids = [None] * self.n_tracks
        if self._ids[s] is None:
            self._ids[s] = self._readers[s].chrom_ids(self._chroms[s])
            plain = np.zeros(len(self.regions.start), bool)
            plain[self._rows] = True
            plain[list(self._special)] = False
            self._readers[s].expect(self._ids[s][plain], self.regions.start[plain], self.regions.end[plain])
        return self._ids[s]

    def close(self):
        self._decoding.stop()
        for written in self._in_genome_order.values():
            written.close()
        self._in_genome_order = {}
        for reader in self._readers:
            reader.close()


class HDF5Truth(TruthSource):
    """Observed counts from one HDF5 dataset ``(N, S, L)``, ``(N, L, S)`` or ``(N, L)``."""

    def __init__(self, path: str, dataset: Optional[str] = None, allow_external_links: bool = False):
        self.path = str(path)
        self.paths = [self.path]
        self._file = open_hdf5(self.path, allow_external_links)
        self.dataset = dataset or self._find_dataset()
        self._data = dataset_or_none(self._file, self.dataset)
        if self._data is None:
            raise InputError(f"{self.path}: no dataset '{self.dataset}'; name the observed counts with --truth-dataset")
        if self._data.ndim not in (2, 3):
            raise InputError(f"{self.path}: '{self.dataset}' has shape {self._data.shape}; expected (N, L), "
                             "(N, S, L) or (N, L, S) observed counts")
        require_numeric(self._data.dtype, f"{self.path}: '{self.dataset}'", "observed counts")
        self._axes = profile_axes(self._data.shape, None)
        self.n = self._data.shape[0]
        self.n_tracks = 1 if self._axes == "NL" else self._data.shape[1 if self._axes == "NSL" else 2]
        self.length = self._data.shape[1] if self._axes == "NLS" else self._data.shape[-1]
        self._read_rows = rows_reader(self._data)

    def _find_dataset(self) -> str:
        for name in TRUTH_DATASET_NAMES:
            if dataset_or_none(self._file, name) is not None:
                return name
        candidates = [n for n in list_datasets(self._file) if self._file[n].ndim in (2, 3)]
        if len(candidates) == 1:
            return candidates[0]
        raise UsageError(f"{self.path}: cannot tell which dataset holds the observed counts "
                         f"(candidates: {', '.join(candidates) or 'none'}); name it with --truth-dataset")

    def stored_datasets(self) -> list:
        """The HDF5 datasets this source reads (for size checks)."""
        return [self._data]

    def describe(self) -> dict:
        return {"kind": "HDF5", "paths": [self.path], "dataset": self.dataset}

    def read(self, i: int, j: int) -> np.ndarray:
        """As stored: a NaN or inf (or a value beyond float32's range, read as inf) stays, for the value screen."""
        try:
            stored = self._read_rows(i, j)
        except OSError as err:
            raise damaged(self.path, i, j, err) from None
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.asarray(stored, dtype=np.float32)
        return to_nsl(values, self._axes)

    def close(self):
        self._read_rows.close()
        self._file.close()


class ArrayTruth(TruthSource):
    """Observed counts held in memory, ``(N, L)`` or ``(N, S, L)``."""

    def __init__(self, observed):
        observed = np.asarray(observed)
        require_numeric(observed.dtype, "the observed counts array", "observed counts", UsageError)
        self._data = observed[:, None, :] if observed.ndim == 2 else observed
        if self._data.ndim != 3:
            raise UsageError(f"observed counts have shape {observed.shape}; expected (N, L) or (N, S, L)")
        self.n, self.n_tracks, self.length = self._data.shape
        self.path = "<array>"
        self.paths = []

    def describe(self) -> dict:
        return {"kind": "arrays", "paths": []}

    def read(self, i: int, j: int) -> np.ndarray:
        return np.array(self._data[i:j])  # a copy, NaN and inf as given (the value screen sees them)

    def close(self):
        pass


def open_truth_files(paths: Sequence[str], regions: Optional[Regions], dataset: Optional[str] = None,
               allow_external_links: bool = False):
    """A truth source for ``paths``: one HDF5 file, or one bigWig per track (needs regions)."""
    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError("give at least one TRUTH file: one bigWig per predicted track, or one HDF5 file")
    if len(paths) == 1 and paths[0].lower().endswith(HDF5_SUFFIXES):
        return HDF5Truth(paths[0], dataset, allow_external_links)
    hdf5 = [p for p in paths if p.lower().endswith(HDF5_SUFFIXES)]
    if hdf5:
        raise UsageError(f"{hdf5[0]}: give either one HDF5 TRUTH file or bigWigs, not both")
    if regions is None:
        raise UsageError(f"{paths[0]}: reading bigWigs needs regions, and the predictions store no coordinates; "
                         "give them with --regions BED")
    return BigWigTruth(paths, regions)
