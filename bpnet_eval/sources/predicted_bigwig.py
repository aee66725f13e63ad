"""Predictions given as bigWigs in counts scale, one per track (chrombpnet ``pred_bw``, BPNet ``export-bw``).

Read over the ``--regions`` windows (all of one width, L). For one region with predicted values
``v[s, i] >= 0`` (uncovered bases are 0):

* profile: the logits are ``z[s, i] = log(v[s, i] + pseudocount)`` (a value of 0 becomes the log of the
  smallest float32, as for HDF5 counts), so ``log_softmax`` over all ``S*L`` positions is the window's
  values normalised jointly over tracks, and per track the track's values normalised on their own;
* log counts (one per region): ``ln(sum v)`` (``logcounts_convention="log"``, the default: basepairmodels
  and BPReveal compare ``ln`` of the predicted total) or ``ln(1 + sum v)`` (``"log1p"``: the convention of
  models whose log count ``c`` predicts ``exp(c) - 1`` counts). The pseudocount changes the profile only.

A predicted bigWig whose values are all <= 0 (a minus strand written negated: BPReveal ``predictToBigwig
--negate``, BPNet ``export-bw --flip-negative-strand``) is read as magnitudes, with a note. Windows that
overlap are counted and noted: a bigWig holds one value per base, so where windows overlap the values read
are the writer's stitching (chrombpnet ``pred_bw``: the nearer summit's window; BPReveal: the mean; BPNet:
the first window), not each window's own prediction.

A window whose predicted values are all 0 has no ``ln(total)``: an error says so (use ``log1p``). A
predicted profile that is 0 where counts were observed has an infinite MNLL: :func:`check_zero_mass`,
called on every batch through ``BigWigPredictions.check_batch``, raises an error that names the file, the region and the fix.
"""

import os
from typing import Optional, Sequence

import numpy as np

from ..environment import allotted_cpus
from ..errors import InputError, UsageError
from ..regions import Regions, match_chromosomes, read_regions
from .base import PredictionSource
from .bigwig import BigWigReader, DecodedBeside
from .tracks import negative_track_note
from .predictions import _LOG_TINY, profile_to_logits

BIGWIG_SUFFIXES = (".bw", ".bigwig")
LOGCOUNTS_CONVENTIONS = {"log": "ln(total)", "log1p": "ln(1 + total)"}
# Logits at or below this are predicted values of 0 (log of the smallest float32).
ZERO_LOGIT = _LOG_TINY
PSEUDOCOUNT_FIX = "give --pred-pseudocount (e.g. 0.001, added to every predicted position)"


def _is_bigwig(path) -> bool:
    return str(path).strip().lower().endswith(BIGWIG_SUFFIXES)


def bigwig_prediction_paths(predictions) -> Optional[list]:
    """The bigWig paths when ``predictions`` names bigWigs (a list, or one string of comma-separated paths), else None."""
    if isinstance(predictions, (str, os.PathLike)):
        parts = [p.strip() for p in str(predictions).split(",")]
    elif isinstance(predictions, (list, tuple)) and predictions and all(
            isinstance(p, (str, os.PathLike)) for p in predictions):
        parts = [str(p) for p in predictions]
    else:
        return None
    flags = [_is_bigwig(p) for p in parts]
    if all(flags):
        return parts
    if any(flags):
        raise UsageError(f"PREDICTIONS '{','.join(parts)}' mixes bigWig and other files; give one HDF5 file, or one "
                         "bigWig (.bw/.bigWig) per predicted track, comma-separated (plus,minus)")
    return None


def counts_to_logits(values: np.ndarray, pseudocount: float = 0.0, owned: bool = False) -> np.ndarray:
    """Logits ``log(v + pseudocount)`` of counts-scale values (0 → log of the smallest float32), float64; ``owned``:
    a float64 ``values`` is the caller's copy, and the logarithms are taken in it."""
    owned = owned and values.dtype == np.float64
    counts = values if owned else np.array(values, dtype=np.float64)  # (a copy: the logarithms are taken in it)
    if pseudocount:
        counts += pseudocount
    return profile_to_logits(counts, "counts", owned=True)


def window_logcounts(values: np.ndarray, convention: str = "log", per_track: bool = False) -> np.ndarray:
    """Predicted log count per window ``(b, 1)``, or per window and track ``(b, S)`` when ``per_track``:
    ``ln(sum v)`` (``log``) or ``ln(1 + sum v)`` (``log1p``) of the window's (track's) values."""
    values = np.asarray(values, dtype=np.float64)
    total = values.sum(axis=2) if per_track else values.sum(axis=(1, 2))[:, None]
    with np.errstate(divide="ignore"):
        return np.log(total) if convention == "log" else np.log1p(total)


def check_zero_mass(logits: np.ndarray, observed: np.ndarray, regions: Regions, offset: int,
                    paths: Sequence[str]) -> None:
    """Raise an InputError where a predicted profile is 0 (logit <= ZERO_LOGIT) at a position with counts > 0.

    ``logits`` and ``observed`` are one batch ``(b, S, L)`` starting at region ``offset``; ``paths`` names
    the predicted bigWig of each track.
    """
    zero = (np.asarray(logits) <= ZERO_LOGIT) & (np.asarray(observed) > 0)
    if not zero.any():
        return
    b, s, i = (int(x) for x in np.argwhere(zero)[0])
    row = offset + b
    n_regions = int(zero.any(axis=(1, 2)).sum())
    raise InputError(
        f"{paths[s]}: the predicted profile of {regions.label(row)} is 0 at {regions.chrom[row]}:"
        f"{int(regions.start[row]) + i} where {float(observed[b, s, i]):g} count(s) were observed, so its MNLL "
        f"is infinite ({n_regions} region(s) like this in regions {offset + 1}-{offset + len(zero)}); "
        f"{PSEUDOCOUNT_FIX}")


def _prediction_regions(regions, length: Optional[int], region_options: dict) -> Regions:
    """The windows to read: a Regions table, or region files (BED windows, or windows of ``length`` centred on
    narrowPeak summits or midpoints), all of one width."""
    if regions is None:
        raise UsageError("bigWig predictions need the windows they were predicted over: give them with --regions "
                         "(BED windows, or a narrowPeak file with --length L)")
    table = regions if isinstance(regions, Regions) else read_regions(regions, length or 0, **region_options)
    what = table.source or "regions"
    widths = table.end - table.start
    if len(widths) and widths.max() == 0:
        raise UsageError(f"{what}: the windows are 0 bp wide; give --regions as BED windows (chrom, start, end) of "
                         "the predicted width, or a narrowPeak file with --length L")
    expected = length or int(widths[0])
    bad = np.flatnonzero(widths != expected)
    if len(bad):
        k = int(bad[0])
        raise InputError(f"{what}: {table.label(k)} is {int(widths[k])} bp wide but {table.label(0)} is "
                         f"{int(widths[0])} bp ({len(bad)} region(s) differ); bigWig predictions are read over "
                         "windows of one width (the predicted length L): give regions of equal width, or a "
                         "narrowPeak file with --length L")
    return table


def overlapping_windows(regions: Regions) -> int:
    """How many windows start before the end of an earlier window on the same chromosome (in genome order)."""
    if len(regions) < 2:
        return 0
    _, chrom_code = np.unique(regions.chrom.astype(str), return_inverse=True)
    offset = chrom_code.astype(np.int64) << 40  # every chromosome on its own stretch of one axis
    order = np.lexsort((regions.start, chrom_code))
    start, end = (offset + regions.start)[order], (offset + regions.end)[order]
    return int((start[1:] < np.maximum.accumulate(end)[:-1]).sum())


class BigWigPredictions(PredictionSource):
    """Counts-scale predicted tracks, one bigWig per track, read over equal-width windows.

    Parameters
    ----------
    paths : sequence of str
        One bigWig per predicted track, in track order (stranded: plus, then minus).
    regions : str, Path or Regions
        The windows (BED, or narrowPeak when ``length`` is given), in output order; all of width L.
    pseudocount : float
        Added to every predicted value before the profile is normalised (default 0).
    logcounts_convention : {"log", "log1p"}
        Predicted log count ``ln(total)`` (default) or ``ln(1 + total)``.
    logcounts_per : {"region", "track"}
        One predicted log count per window over all tracks (default), or one per track from the track's own
        total (producers that predict a total per strand: original BPNet ``export-bw``, bpnet 2.0).
    length : int, optional
        L; needed for narrowPeak or midpoint-centred windows (default: the width of the BED windows).
    regions_format, window_center, chroms
        How region files are read (``regions.read_regions``).
    """

    n_logcount_columns = 1

    reads_own_windows = True  # the windows are read here, from the region options (``regions()`` gives them)

    def __init__(self, paths: Sequence[str], regions, pseudocount: float = 0.0, logcounts_convention: str = "log",
                 length: Optional[int] = None, regions_format: str = "auto", window_center: Optional[str] = None,
                 chroms=None, logcounts_per: str = "region"):
        self.paths = [str(p) for p in paths]
        if logcounts_per not in ("region", "track"):
            raise UsageError(f"--pred-logcounts-per must be region or track, not '{logcounts_per}'")
        self.per_track = logcounts_per == "track"
        self.path = ",".join(self.paths)
        if logcounts_convention not in LOGCOUNTS_CONVENTIONS:
            raise UsageError(f"--pred-logcounts must be log (ln(total)) or log1p (ln(1 + total)), "
                             f"not '{logcounts_convention}'")
        if not np.isfinite(pseudocount) or pseudocount < 0:
            raise UsageError(f"--pred-pseudocount must be a finite number >= 0, not {pseudocount}")
        self.pseudocount = float(pseudocount)
        self.logcounts_convention = logcounts_convention
        self._regions = _prediction_regions(regions, length, {"regions_format": regions_format,
                                                              "window_center": window_center, "chroms": chroms})
        self.n, self.n_tracks = len(self._regions), len(self.paths)
        self.n_logcount_columns = self.n_tracks if self.per_track else 1
        self.length = int(self._regions.end[0] - self._regions.start[0]) if self.n else int(length or 0)
        self._readers = []
        self._decoding = DecodedBeside({})  # files decoded by processes beside this one: ``will_read``
        self._ahead = None  # processes reading the values of the run's batches ahead: ``will_read``
        try:
            for p in self.paths:
                self._readers.append(BigWigReader(p))
            self._chroms = [self._file_chroms(reader) for reader in self._readers]
            self._negated = [s for s, reader in enumerate(self._readers) if reader.stored_as_negative()]
        except BaseException:
            self.close()
            raise

    def bigwig_readers(self) -> list:
        return list(self._readers)

    def _file_chroms(self, reader: BigWigReader) -> np.ndarray:
        """Each region's chromosome as named in this file (``chr1`` ↔ ``1``, ``chrM`` ↔ ``MT`` matched)."""
        mapping, missing = match_chromosomes(self._regions.chrom, reader.chrom_sizes)
        if missing:
            k = int(np.flatnonzero(np.isin(self._regions.chrom, missing))[0])
            raise InputError(f"{reader.path}: chromosome '{self._regions.chrom[k]}' of {self._regions.label(k)} is "
                             f"not in this predicted bigWig ({len(missing)} chromosome(s) missing: "
                             f"{', '.join(missing[:5])}); give regions the predictions were written for")
        return np.array([mapping[c] for c in self._regions.chrom], dtype=object)

    def describe(self) -> dict:
        """What was read and how, for reports (``notes``: negated files read as magnitudes, overlapping windows)."""
        negated = [self.paths[s] for s in self._negated]
        notes = [negative_track_note(p, "predicted") for p in negated]
        overlaps = overlapping_windows(self._regions)
        if overlaps:
            notes.append(f"{self.path}: {overlaps} of {self.n} windows overlap an earlier one; a bigWig holds one "
                         "value per base, so in overlaps the predicted values read are the writer's stitching "
                         "(chrombpnet pred_bw: the window of the nearer summit; BPReveal predictToBigwig: their "
                         "mean; BPNet export-bw: the first window), not each window's own prediction")
        return {"path": self.path, "paths": self.paths, "layout": "bigWig counts, one file per track",
                "profile_kind": "counts", "pseudocount": self.pseudocount,
                "logcounts": LOGCOUNTS_CONVENTIONS[self.logcounts_convention], "n_regions": self.n,
                "n_tracks": self.n_tracks, "length": self.length,
                "logcounts_per": "track" if self.per_track else "region",
                "read_as_magnitudes": negated, "overlapping_windows": overlaps, "notes": notes}

    def regions(self) -> Regions:
        """The windows the predictions are read over."""
        return self._regions

    def will_read(self, start: int, stop: int, fork=None, read_ahead=None) -> None:
        """Tell each file the windows of rows ``start..stop`` (``BigWigReader.expect``): a file too big to keep whole
        is kept where they lie (a predicted bigWig holds a value on every base of its windows: as those values).
        Where a file is too big even so, and so read block by block, with ``read_ahead`` (``read_ahead(source)``:
        processes forked now reading ``source``'s batches of these rows ahead, ``workers.ProcessReadAhead``) the
        values of every file are read by those processes (``PredictedValues``), beside the scoring; else, with
        ``fork``, the files after the first that are decoded at their first read are decoded by processes forked
        now, as the observed tracks' reading process does (``bigwig.DecodedBeside``)."""
        starts, ends = self._regions.start[start:stop], self._regions.end[start:stop]
        for reader, chroms in zip(self._readers, self._chroms):
            reader.expect(reader.chrom_ids(chroms[start:stop]), starts, ends)
        if read_ahead is not None and self._ahead is None and any(r.reads_blocks() for r in self._readers):
            self._ahead = read_ahead(PredictedValues(self))
        elif not self._decoding:
            self._decoding = DecodedBeside(dict(enumerate(self._readers)), fork, allotted_cpus())

    def read_track(self, s: int, i: int, j: int) -> np.ndarray:
        """Values ``(j-i, L)`` of track ``s``, zeros past either chromosome end."""
        if s in self._decoding:
            self._decoding.adopt(s, self._readers[s])
        reader, chroms = self._readers[s], self._chroms[s][i:j]
        start, end = self._regions.start[i:j], self._regions.end[i:j]
        sizes = np.array([reader.chrom_sizes[c] for c in chroms], dtype=np.int64)
        inside = (start >= 0) & (end <= sizes)
        out = np.zeros((j - i, self.length), dtype=np.float32)
        if inside.any():
            out[inside] = reader.read(chroms[inside], start[inside], end[inside])
        for k in np.flatnonzero(~inside).tolist():
            out[k] = reader.read_clipped(chroms[k], int(start[k]), int(end[k]))
        return out

    def check_batch(self, logits, observed, regions, first_row: int) -> None:
        """Zero predicted mass where counts were observed (``check_zero_mass``)."""
        check_zero_mass(logits, observed, regions, first_row, self.paths)

    def read(self, i: int, j: int):
        """Logits ``(j-i, S, L)`` (float64) and log counts ``(j-i, 1)`` of regions ``i..j``."""
        if self._ahead is not None and self._ahead.is_next(i, j):  # (shared memory, converted before the next read)
            values = self._ahead.read(i, j)
        else:
            values = np.stack([self.read_track(s, i, j) for s in range(self.n_tracks)], axis=1)
        for s in self._negated:  # every value of the file <= 0: a minus strand written negated
            np.abs(values[:, s], out=values[:, s])
        negative = np.argwhere(values < 0) if values.size and not values.min() >= 0 else ()  # (min: NaN if any)
        if len(negative):
            b, s, p = (int(x) for x in negative[0])
            raise InputError(f"{self.paths[s]}: predicted value {float(values[b, s, p]):g} at position {p} of "
                             f"{self._regions.label(i + b)} is negative, in a file that also holds positive values; "
                             "predicted bigWigs hold counts, all >= 0, or all <= 0 for a minus strand written "
                             "negated (read as magnitudes): give each strand's predictions in its own file")
        counts = values.astype(np.float64)  # the totals, then the logarithms in it (one float64 copy of the batch)
        logcounts = window_logcounts(counts, self.logcounts_convention, self.per_track)
        empty = np.argwhere(np.isneginf(logcounts))
        if len(empty):
            b, s = (int(x) for x in empty[0])
            where = f"{self.paths[s]}: the predicted values of" if self.per_track else f"{self.path}: the predicted values of"
            raise InputError(f"{where} {self._regions.label(i + b)} are all 0, so its predicted log count "
                             "ln(total) is -inf; score with --pred-logcounts log1p (ln(1 + total)) or drop the region")
        return counts_to_logits(counts, self.pseudocount, owned=True), logcounts

    def close(self):
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        self._decoding.stop()
        for reader in self._readers:
            reader.close()


class PredictedValues:
    """The values of a ``BigWigPredictions``' files over its windows, ``(b, S, L)`` float32, as processes reading
    ahead take a source (``workers.ProcessReadAhead``: ``read_into``, ``start_reading``, ``n_tracks``, ``paths``)."""

    def __init__(self, predictions: BigWigPredictions):
        self.predictions = predictions
        self.n_tracks, self.paths = predictions.n_tracks, predictions.paths

    def start_reading(self, tracks: Optional[Sequence[int]] = None, fork=None) -> None:
        """Nothing to start: each file is read by the process it is given to."""

    def read_into(self, i: int, j: int, out: np.ndarray, tracks: Optional[Sequence[int]] = None) -> None:
        """The values of regions ``i..j`` (of ``tracks`` only) written into ``out``."""
        for s in range(self.n_tracks) if tracks is None else tracks:
            out[:, s] = self.predictions.read_track(s, i, j)
