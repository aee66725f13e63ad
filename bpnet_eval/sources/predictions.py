"""Prediction sources: the HDF5 layouts peers write, and in-memory arrays.

Every source answers ``read(i, j)`` with ``(logits (b, S, L), logcounts (b, T))`` as numpy
arrays, T = 1 (one log count per region) or S (one per track), plus the regions it stores.
Profiles stored as probabilities or counts become logits by ``log``, which ``log_softmax``
turns back into the same distribution.
"""

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InputError, UsageError
from ..input_files import UNEXPECTED_READ_ERRORS, reading
from ..regions import Regions, windows_around
from .base import PredictionSource
from .chunks import rows_reader
from .hdf5 import damaged, dataset_or_none, decode_strings, list_datasets, open_hdf5, read_column, require_dataset

PROFILE_KINDS = ("logits", "probs", "counts")
# Smallest positive float32: log(0) of a stored probability becomes this instead of -inf.
_LOG_TINY = float(np.log(np.finfo(np.float32).tiny))


@dataclass
class Layout:
    """Where a predictions file keeps each piece, and how to read it."""

    name: str
    logits: str
    logcounts: str
    profile_kind: str = "logits"
    axes: Optional[str] = None  # "NL", "NSL" or "NLS"; None = decide from the shape
    coords: dict = field(default_factory=dict)
    crops_wider_windows: bool = False  # stored windows wider than L hold the middle L (basepairmodels)
    count_target: str = "log1p"  # what the producer trains its log counts on: ln(1 + K), or ln K (BPReveal)


def profile_axes(shape, declared: Optional[str]) -> str:
    """Axis order of a stored profile: ``NL``, ``NSL`` or ``NLS`` (tracks are the short axis)."""
    if len(shape) == 2:
        return "NL"
    if len(shape) != 3:
        raise ValueError(f"profile dataset has shape {shape}")
    if declared:
        return declared
    return "NLS" if shape[2] < shape[1] else "NSL"


def to_nsl(array: np.ndarray, axes: str) -> np.ndarray:
    """Reorder a stored profile batch to ``(b, S, L)``."""
    if axes == "NL":
        return array[:, None, :]
    if axes == "NLS":
        return np.ascontiguousarray(np.swapaxes(array, 1, 2))
    return array


def profile_to_logits(profile: np.ndarray, kind: str, owned: bool = False) -> np.ndarray:
    """Logits of a stored profile: as is, or ``log`` of probabilities/counts (0 → log(float32 tiny)); ``owned``: the
    caller's array may take the logarithms (a float array read for this call alone).

    A counts-scale profile whose values are all <= 0 over a track of a region is read as ``|v|``: its
    distribution ``v / sum(v)`` is the same (basepairmodels writes ``softmax(z) * (e^c - 1)``, negative
    when the predicted log count c is below 0); a track mixing signs stays negative (NaN logits, an error)."""
    if kind == "logits":
        return profile
    profile = np.asarray(profile)
    if kind == "counts" and profile.size:
        with np.errstate(invalid="ignore"):  # (NaN: looked at as before, below)
            positive = (profile.max(axis=-1) > 0).all()  # every track has a value above 0: none is flipped
        if not positive:
            flipped = (profile <= 0).all(axis=-1, keepdims=True) & (profile < 0).any(axis=-1, keepdims=True)
            if flipped.any():
                profile, owned = np.where(flipped, -profile, profile), True
    in_place = owned and profile.dtype.kind == "f" and profile.dtype.isnative and profile.flags.writeable
    with np.errstate(divide="ignore", invalid="ignore"):
        logits = np.log(profile, out=profile if in_place else None)
    return np.maximum(logits, _LOG_TINY, out=logits)


def non_numeric(dtype) -> Optional[str]:
    """What a dtype holds when it is not real numbers (complex, text, objects, records, dates), else None."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biuf":
        return None
    kinds = {"c": "complex numbers", "S": "text", "U": "text", "O": "text or Python objects",
             "V": "records (a compound type)", "M": "dates", "m": "time spans"}
    return f"{kinds.get(dtype.kind, 'values that are not numbers')} ({dtype})"


def require_numeric(dtype, where: str, what: str, error=InputError) -> None:
    """Raise ``error`` naming ``where`` when ``dtype`` is not real numbers (``what``: the predicted logits or
    log counts); complex values would lose their imaginary part and text could not be scored."""
    held = non_numeric(dtype)
    if held is not None:
        raise error(f"{where} holds {held}, but {what} must be real numbers (integer or float); write them as "
                    "float32 or float64")


def _first(handle, names):
    return next((n for n in names if dataset_or_none(handle, n) is not None), None)


def detect_layout(handle, head: Optional[int] = None) -> Layout:
    """Recognise a peer's layout: BPReveal heads, chrombpnet probabilities/logits, basepairmodels."""
    heads = sorted(int(m.group(1)) for k in handle.keys() if (m := re.fullmatch(r"head_(\d+)", k)))
    if heads:
        chosen = heads[0] if head is None else head
        if chosen not in heads:
            raise UsageError(f"{handle.filename}: no head_{chosen}; heads present: "
                             f"{', '.join(f'head_{h}' for h in heads)}; choose one with --head")
        return Layout(f"BPReveal (head_{chosen})", f"head_{chosen}/logits", f"head_{chosen}/logcounts",
                      "logits", "NLS",
                      {"chrom_index": "coords_chrom", "chrom_names": "chrom_names",
                       "start": "coords_start", "end": "coords_stop"}, count_target="log")
    stored = {"chrom": "coords/coords_chrom",
              "start": _first(handle, ["coords/coords_start", "coords/coords_start_dset"]),
              "end": _first(handle, ["coords/coords_end", "coords/coords_end_dset"]),
              "center": _first(handle, ["coords/coords_center"]),
              "peak": _first(handle, ["coords/coords_peak"])}
    coords = {k: v for k, v in stored.items() if v and dataset_or_none(handle, v) is not None}
    if dataset_or_none(handle, "predictions/logits") is not None:
        return Layout("logits (predictions/logits)", "predictions/logits", "predictions/logcounts",
                      "logits", None, coords)
    if dataset_or_none(handle, "predictions/profs") is not None:
        return Layout("chrombpnet (predictions/profs, probabilities)", "predictions/profs",
                      "predictions/logcounts", "probs", None, coords)
    if dataset_or_none(handle, "predictions/pred_profs") is not None:
        return Layout("basepairmodels (predictions/pred_profs, counts scale)", "predictions/pred_profs",
                      "predictions/pred_logcounts", "counts", "NLS", coords, crops_wider_windows=True)
    found = ", ".join(list_datasets(handle)[:8]) or "none"
    raise InputError(f"{handle.filename}: no known predictions layout (datasets: {found}); "
                     "name them with --logits-dataset and --logcounts-dataset")


class HDF5Predictions(PredictionSource):
    """Predicted logits and log counts from an HDF5 file, read in batches of regions.

    Parameters
    ----------
    path : str
        The HDF5 file.
    logits_dataset, logcounts_dataset : str, optional
        Dataset names overriding the detected layout.
    profile_kind : {"logits", "probs", "counts"}, optional
        What the profile dataset holds (default: from the layout, else logits).
    head : int, optional
        BPReveal head to score (default: the first).
    allow_external_links : bool
        Follow HDF5 external links and read virtual / externally stored datasets (refused by default).
    """

    def __init__(self, path, logits_dataset=None, logcounts_dataset=None, profile_kind=None, head=None,
                 allow_external_links=False):
        self.path = str(path)
        self.notes = []  # how the file was read where it departs from the plain reading (describe)
        self._file = open_hdf5(self.path, allow_external_links)
        if logits_dataset or logcounts_dataset:
            try:
                base = detect_layout(self._file, head)
            except InputError:
                base = Layout("explicit", "", "")
            layout = Layout("explicit datasets", logits_dataset or base.logits,
                            logcounts_dataset or base.logcounts, base.profile_kind, base.axes, base.coords)
        else:
            layout = detect_layout(self._file, head)
        if profile_kind:
            if profile_kind not in PROFILE_KINDS:
                raise UsageError(f"--profile-kind must be one of {', '.join(PROFILE_KINDS)}, not '{profile_kind}'")
            layout.profile_kind = str(profile_kind)
        self.layout = layout
        fix = "name the dataset with --logits-dataset / --logcounts-dataset"
        self._profile = require_dataset(self._file, layout.logits, fix)
        self._logcounts = require_dataset(self._file, layout.logcounts, fix)
        require_numeric(self._profile.dtype, f"{self.path}: '{layout.logits}'", "the predicted profile")
        require_numeric(self._logcounts.dtype, f"{self.path}: '{layout.logcounts}'", "the predicted log counts")
        self._check_shapes()
        self._read_profile, self._read_logcounts = rows_reader(self._profile), rows_reader(self._logcounts)
        self._ahead = None  # processes inflating the profile's rows ahead (``will_read``)

    def _check_shapes(self):
        shape, counts_shape = self._profile.shape, self._logcounts.shape
        if len(shape) not in (2, 3) or 0 in shape:
            raise InputError(f"{self.path}: '{self.layout.logits}' has shape {shape}; "
                             "expected (N, L), (N, S, L) or (N, L, S)")
        self._axes = profile_axes(shape, self.layout.axes)
        self.n = shape[0]
        # Regions per HDF5 chunk of the profile (1 when stored contiguously): shards align to it.
        self.chunk_rows = int((self._profile.chunks or (1,))[0])
        self.n_tracks = 1 if self._axes == "NL" else shape[1 if self._axes == "NSL" else 2]
        self.length = shape[-1] if self._axes != "NLS" else shape[1]
        if counts_shape[:1] != (self.n,) or len(counts_shape) > 2:
            raise InputError(f"{self.path}: '{self.layout.logcounts}' has shape {counts_shape} but "
                             f"'{self.layout.logits}' has N = {self.n} regions; expected ({self.n},), "
                             f"({self.n}, 1) or ({self.n}, {self.n_tracks})")
        self.n_logcount_columns = 1 if len(counts_shape) == 1 else counts_shape[1]
        if self.n_logcount_columns not in (1, self.n_tracks):
            raise InputError(f"{self.path}: '{self.layout.logcounts}' has {self.n_logcount_columns} columns "
                             f"but the profile has S = {self.n_tracks} tracks; expected 1 or {self.n_tracks}")

    def stored_datasets(self) -> list:
        """The HDF5 datasets this source reads in batches (for size checks)."""
        return [self._profile, self._logcounts]

    def describe(self) -> dict:
        """What was detected, for reports."""
        return {"path": self.path, "layout": self.layout.name, "profile_dataset": self.layout.logits,
                "profile_kind": self.layout.profile_kind, "logcounts_dataset": self.layout.logcounts,
                "n_regions": self.n, "n_tracks": self.n_tracks, "length": self.length,
                "logcounts_per": "region" if self.n_logcount_columns == 1 else "track", "notes": list(self.notes),
                "trained_count_target": self.layout.count_target}

    def regions(self) -> Optional[Regions]:
        """The windows stored with the predictions, or None when the file has none."""
        with reading(self.path, "the coordinates stored with the predictions", "give the regions with --regions"):
            return self._stored_regions()

    def _stored_regions(self) -> Optional[Regions]:
        coords, handle, n = self.layout.coords, self._file, self.n
        if "chrom_names" in coords:
            names = require_dataset(handle, coords["chrom_names"], "BPReveal files store chrom_names")
            if names.ndim != 1 or names.shape[0] > max(n, 1 << 16):
                raise InputError(f"{self.path}: '{coords['chrom_names']}' has shape {names.shape}; "
                                 "expected one name per chromosome")
            index = np.asarray(read_column(handle, coords["chrom_index"], n), dtype=np.int64)
            names = decode_strings(names[()])
            if len(index) and (index.min() < 0 or index.max() >= len(names)):
                raise InputError(f"{self.path}: '{coords['chrom_index']}' refers to chromosome numbers outside "
                                 f"0..{len(names) - 1}; give the regions with --regions")
            chrom = names[index]
        elif "chrom" in coords:
            chrom = decode_strings(read_column(handle, coords["chrom"], n))
        else:
            return None
        peak = read_column(handle, coords["peak"], n) if "peak" in coords else None
        if "start" in coords and "end" in coords:
            start, end = read_column(handle, coords["start"], n), read_column(handle, coords["end"], n)
            source = f"{self.path} [{coords['start']}, {coords['end']}]"
            width = np.unique(np.asarray(end, dtype=np.int64) - np.asarray(start, dtype=np.int64))
            if self.layout.crops_wider_windows and len(width) == 1 and width[0] > self.length:
                # basepairmodels / bpnet 2.0 --output-window-size < --output-len: the profile is the middle L
                # of the stored output_len window (columns output_len//2 - L//2 ..)
                wide = int(width[0])
                start = np.asarray(start, dtype=np.int64) + wide // 2 - self.length // 2
                end = start + self.length
                source += f" centre-cropped from {wide} bp to L = {self.length}"
                note = (f"{self.path}: the stored windows are {wide} bp wide but the profiles have "
                                  f"L = {self.length} positions (basepairmodels --output-window-size < "
                                  f"--output-len): scored over the middle {self.length} bp of each window")
                self.notes += [] if note in self.notes else [note]
            return Regions(chrom, start, end, peak, source)
        if "center" in coords:
            return windows_around(chrom, read_column(handle, coords["center"], n), self.length, peak,
                                  f"{self.path} [{coords['center']} ± L/2]")
        return None

    def will_read(self, start: int, stop: int, fork=None, read_ahead=None) -> None:
        """A compressed profile (``chunks.rows_reader`` inflates it) is inflated by a process forked now
        (``read_ahead``: ``workers.ProcessReadAhead``, where reading processes are wanted) batch by batch ahead, its
        rows as stored, beside the scoring: inflating in this process's threads competed with the computation for
        Python's lock. One process, with a thread per CPU: batches shared out among processes would each inflate
        the rows of chunks at their edges again."""
        if read_ahead is not None and self._ahead is None and self._read_profile.direct:
            self._ahead = read_ahead(StoredRows(self._read_profile, self.path, self._profile.shape[1:]),
                                     length=int(np.prod(self._profile.shape[1:])),
                                     dtype=self._profile.dtype.newbyteorder("="), processes=1)

    def _stored_profile(self, i: int, j: int) -> np.ndarray:
        """The profile's rows ``i..j`` as ``(b, S, L)``, an array of their own: from the processes reading ahead where
        they read that batch next (copied, as their memory takes the next batch, in one pass with the reordering of
        an ``(N, L, S)`` profile: a float64 batch of 1,024 x 1,000 x 2 is above glibc's 8 MB mmap threshold, and a
        second copy, a fresh mapping faulted in page by page, cost ~0.4 s of system time per 100k regions), else read
        here."""
        if self._ahead is not None and self._ahead.is_next(i, j):
            profile = to_nsl(self._ahead.read(i, j).reshape(j - i, *self._profile.shape[1:]), self._axes)
            return profile if profile.flags.owndata else profile.copy()
        return to_nsl(self._read_profile(i, j), self._axes)

    def read(self, i: int, j: int):
        """Logits ``(j-i, S, L)`` and log counts ``(j-i, T)`` of regions ``i..j``."""
        try:
            profile, logcounts = self._stored_profile(i, j), np.asarray(self._read_logcounts(i, j))
        except UNEXPECTED_READ_ERRORS as err:
            raise damaged(self.path, i, j, err) from None
        return (profile_to_logits(profile, self.layout.profile_kind, owned=True),
                logcounts.reshape(j - i, self.n_logcount_columns))

    def close(self):
        if getattr(self, "_ahead", None) is not None:
            self._ahead.close()
            self._ahead = None
        for reader in (getattr(self, "_read_profile", None), getattr(self, "_read_logcounts", None)):
            if reader is not None:
                reader.close()
        self._file.close()


class StoredRows:
    """Rows of a dataset read by ``chunks.rows_reader`` as processes reading ahead take a source
    (``workers.ProcessReadAhead``: one track of ``prod(shape[1:])`` values a row, ``read_into``, ``start_reading``)."""

    n_tracks = 1

    def __init__(self, read_rows, path: str, row_shape: tuple):
        self.read_rows, self.paths, self.row_shape = read_rows, [path], tuple(row_shape)

    def start_reading(self, tracks=None, fork=None) -> None:
        """Nothing to start: the reading process inflates with threads of its own."""

    def read_into(self, i: int, j: int, out: np.ndarray, tracks=None) -> None:
        """Rows ``i..j`` written into ``out`` ``(j - i, 1, width)`` (straight into it: a reading process's slot)."""
        rows = out.reshape(j - i, *self.row_shape)  # a view of the (C-contiguous) slot
        self.read_rows(i, j, rows)
        if not np.shares_memory(rows, out):  # (a slot laid out otherwise: reshaped into a copy)
            out[...] = rows.reshape(out.shape)


class ArrayPredictions(PredictionSource):
    """Predictions held in memory: logits ``(N, L)`` or ``(N, S, L)`` and log counts ``(N,)``, ``(N, 1)`` or ``(N, S)``."""

    def __init__(self, logits, logcounts, profile_kind="logits"):
        logits = np.asarray(logits)
        require_numeric(logits.dtype, "the logits array", "the predicted logits", UsageError)
        self._set_shapes(logits.shape, logcounts)
        self._logits = logits[:, None, :] if logits.ndim == 2 else logits
        self.profile_kind = profile_kind
        self.path = "<array>"

    def _set_shapes(self, logits_shape: tuple, logcounts) -> None:
        """``n``, ``n_tracks``, ``length`` from the logits' shape ``(N, L)`` or ``(N, S, L)``, and the log counts
        ``(N,)``, ``(N, 1)`` or ``(N, S)`` kept as ``(N, T)``; a UsageError for any other shapes."""
        if len(logits_shape) not in (2, 3):
            raise UsageError(f"logits have shape {logits_shape}; expected (N, L) or (N, S, L)")
        self.n, self.n_tracks, self.length = (logits_shape[0], 1, logits_shape[1]) if len(logits_shape) == 2 \
            else logits_shape
        logcounts = np.asarray(logcounts)
        require_numeric(logcounts.dtype, "the log counts array", "the predicted log counts", UsageError)
        self.n_logcount_columns = 1 if logcounts.ndim == 1 else logcounts.shape[-1]
        if logcounts.shape[0] != self.n or self.n_logcount_columns not in (1, self.n_tracks) or logcounts.ndim > 2:
            raise UsageError(f"log counts have shape {logcounts.shape}; expected ({self.n},), ({self.n}, 1) "
                             f"or ({self.n}, {self.n_tracks})")
        self._logcounts = logcounts.reshape(self.n, self.n_logcount_columns)

    def describe(self) -> dict:
        return {"path": self.path, "layout": "arrays", "profile_kind": self.profile_kind, "n_regions": self.n,
                "n_tracks": self.n_tracks, "length": self.length,
                "logcounts_per": "region" if self.n_logcount_columns == 1 else "track"}

    def regions(self):
        return None

    def read(self, i: int, j: int):
        return profile_to_logits(self._logits[i:j], self.profile_kind), self._logcounts[i:j]

    def close(self):
        pass
