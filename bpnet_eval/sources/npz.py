"""Predictions saved as NumPy ``.npz`` files (bpnet-lite 0.9 ``bpnet predict``: profile logits
``arr_0`` (N, S, L) in one file, log counts ``arr_0`` (N, 1) in another, and the index mask ``arr_0`` (n0,)
bool in a third (``…idx.npy.npz``: which of the interleaved loci were predicted); no coordinates).

The files are told apart by their arrays (3-D: the profile; one value per region: the log counts; 1-D
booleans: the mask), so files given in another order are read correctly, with a note saying so. bpnet-lite
builds its windows with tangermeme's ``extract_loci``: the midpoint of each locus ± L/2, loci files
interleaved, so these predictions default to ``--window-center midpoint`` (``window_center``).

The profile is read batch by batch (``NpzArray.rows``: uncompressed arrays at their rows' place in the file,
compressed ones inflated as a stream), so a run's memory does not grow with N; the log counts and the mask are
loaded. Nothing is ever unpickled (object arrays are refused).
"""

import os
import struct
import zipfile
from contextlib import contextmanager
from typing import Optional

import numpy as np

from ..environment import memory_limit_bytes
from ..errors import InputError, UsageError
from ..input_files import UNEXPECTED_READ_ERRORS, error_reason, open_regular_fd, require_regular_file
from .inflate import InflatedMember, member_data_start
from .predictions import ArrayPredictions, require_numeric

_FIX = ("give the .npz files that bpnet-lite's predict wrote (profile logits, log counts, and optionally its "
        "index mask …idx.npy.npz)")
ROLES = ("profile logits", "log counts", "index mask")


def npz_prediction_paths(predictions) -> Optional[list]:
    """``[profile.npz, logcounts.npz(, mask.npz)]`` when ``predictions`` names two or three .npz files (a list, or
    one comma-separated string), else None."""
    if isinstance(predictions, (str, os.PathLike)):
        parts = [p.strip() for p in str(predictions).split(",")]
    elif isinstance(predictions, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in predictions):
        parts = [str(p) for p in predictions]
    else:
        return None
    flags = [p.lower().endswith(".npz") for p in parts]
    if not any(flags):
        return None
    if len(parts) not in (2, 3) or not all(flags):
        raise UsageError(f"PREDICTIONS '{','.join(parts)}': .npz predictions are two files, the profile logits "
                         "and the log counts, comma-separated (logits.npz,logcounts.npz), and optionally "
                         "bpnet-lite's index mask as a third (predictions.idx.npy.npz)")
    return parts


def _member(archive: zipfile.ZipFile, path: str) -> zipfile.ZipInfo:
    """The archive's one array (``arr_0`` when there are several)."""
    arrays = [info for info in archive.infolist() if info.filename.endswith(".npy")]
    chosen = [info for info in arrays if info.filename == "arr_0.npy"] or arrays
    if len(chosen) != 1:
        names = ", ".join(info.filename[:-4] for info in arrays) or "none"
        raise InputError(f"{path}: holds arrays {names}, not one 'arr_0'; {_FIX}")
    return chosen[0]


def _read_header(handle, path: str):
    """``(shape, fortran_order, dtype)`` of the .npy header at the handle's position, refusing object arrays."""
    try:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(handle)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy array inside the .npz ({err}); {_FIX}")
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects (pickled data), which are never loaded; {_FIX}")
    return shape, fortran_order, dtype


class NpzArray:
    """The one array of a .npz file, known by its .npy header (``shape``, ``dtype``) until it is read: ``load()``
    reads it whole (for the small arrays: log counts, the index mask), ``rows(i, j)`` reads rows ``i..j`` only.

    An array stored uncompressed (``np.savez``) is read by ``preadv`` at its rows' place in the file (never
    mapped: the run's memory does not grow with the file, as it would with a map whose pages count in its
    RSS); a compressed one (``np.savez_compressed``) is inflated as it is read (``inflate.InflatedMember``:
    forward, or from a checkpoint for rows behind), and its size and checksum are checked when its last row is
    read. An array stored in Fortran order has no rows in one place: it is read whole (if it fits) the first
    time rows are read.
    """

    def __init__(self, path: str, memory_limit: int):
        require_regular_file(path, ".npz file")  # before zipfile opens it: a named pipe would block
        self.path, self.memory_limit = path, memory_limit
        self._fd = self._member = self._whole = None
        with _reading(path):
            with zipfile.ZipFile(path) as archive:
                self.info = _member(archive, path)
                self.compressed = self.info.compress_type != zipfile.ZIP_STORED
                if self.compressed:
                    with archive.open(self.info) as member:
                        self.shape, self.fortran_order, self.dtype = _read_header(member, path)
                        self.offset = member.tell()  # of the data in the inflated member
                else:
                    with open(path, "rb") as handle:
                        handle.seek(member_data_start(handle.fileno(), self.info, path, _FIX))
                        self.shape, self.fortran_order, self.dtype = _read_header(handle, path)
                        self.offset = handle.tell()  # of the data in the file
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.whole_only = self.fortran_order and self.ndim > 1  # its rows are not stored one after another
        if self.whole_only:
            self._require_fits()

    def load(self) -> np.ndarray:
        """The whole array: memory-mapped when stored uncompressed, else read (if it fits in half the memory)."""
        self._require_fits()
        with _reading(self.path):
            if not self.compressed:
                return np.memmap(self.path, dtype=self.dtype, mode="r", shape=self.shape, offset=self.offset,
                                 order="F" if self.fortran_order else "C")
            with zipfile.ZipFile(self.path) as archive, archive.open(self.info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)

    def _require_fits(self) -> None:
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if self.compressed and nbytes > self.memory_limit // 2:
            raise InputError(f"{self.path}: a compressed array of {nbytes / 2**30:.1f} GiB in Fortran order is read "
                             "whole and does not fit in memory here; save it in C order (np.ascontiguousarray) or "
                             "uncompressed (np.savez)")

    def rows(self, i: int, j: int) -> np.ndarray:
        """Rows ``i..j`` (a new, writable array)."""
        if self.whole_only:
            self._whole = self.load() if self._whole is None else self._whole
            return np.array(self._whole[i:j])
        out = np.empty((j - i, *self.shape[1:]), self.dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        with _reading(self.path):
            if self.compressed:
                self._member = InflatedMember(self.path, self.info, _FIX) if self._member is None else self._member
                self._member.read_into(self.offset + i * self.row_bytes, view)
            else:
                self._fd = open_regular_fd(self.path, ".npz file") if self._fd is None else self._fd
                if os.preadv(self._fd, [view], self.offset + i * self.row_bytes) != len(view):
                    raise InputError(f"{self.path}: the file ends inside rows {i + 1}..{j} of its array; {_FIX}")
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._member is not None:
            self._member.close()
        self._fd = self._member = self._whole = None


@contextmanager
def _reading(path: str):
    """An error while a .npz file is read becomes an InputError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except (zipfile.BadZipFile, struct.error, ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable .npz file ({err}); {_FIX}") from None
    except UNEXPECTED_READ_ERRORS as err:
        raise InputError(f"{path}: not a readable .npz file ({error_reason(err)}); {_FIX}") from None


def npz_role(array: np.ndarray) -> Optional[int]:
    """What an .npz array holds, from its shape and dtype: 0 profile logits (3-D, or 2-D with more than one
    column), 1 log counts ((N,) or (N, 1) numbers), 2 index mask (1-D booleans); None when it is none of these."""
    if array.dtype == bool:
        return 2 if array.ndim == 1 else None
    if array.ndim == 3 or (array.ndim == 2 and array.shape[1] > 1):
        return 0
    if array.ndim in (1, 2):
        return 1
    return None


def sort_npz_arrays(paths, arrays) -> tuple:
    """``(arrays by role, paths by role, note)``: the given arrays put in the order profile, log counts (, mask)
    by ``npz_role``; the note says when the files were given in another order (else "")."""
    roles = [npz_role(a) for a in arrays]
    described = ", ".join(f"{p} {tuple(a.shape)} {a.dtype}" for p, a in zip(paths, arrays))
    if None in roles or sorted(roles) != list(range(len(arrays))):
        raise InputError(f"{','.join(paths)}: cannot tell the profile logits (N, S, L), the log counts (N, 1) "
                         f"{'and the index mask (n,) bool ' if len(arrays) == 3 else ''}apart by their shapes "
                         f"({described}); {_FIX}")
    order = [roles.index(k) for k in range(len(arrays))]
    note = ""
    if order != list(range(len(arrays))):
        note = (f"the .npz files were given in another order than profile, log counts"
                f"{', mask' if len(arrays) == 3 else ''} (swapped): read by their shapes as "
                + ", ".join(f"{ROLES[k]} = {paths[order[k]]}" for k in range(len(arrays))))
    return [arrays[k] for k in order], [paths[k] for k in order], note


class NpzPredictions(ArrayPredictions):
    """bpnet-lite 0.9 predictions: profile logits and log counts in two .npz files, plus its index mask in an
    optional third (regions via --regions: the loci files bpnet predict read, interleaved, then masked). The
    profile is read batch by batch (``NpzArray.rows``); the log counts and the mask are loaded."""

    window_center = "midpoint"  # tangermeme's extract_loci: the midpoint of each locus ± L/2

    def __init__(self, paths, memory_limit: Optional[int] = None):
        memory_limit = memory_limit_bytes() if memory_limit is None else memory_limit
        arrays = [NpzArray(path, memory_limit) for path in paths]  # headers only: no file is held open
        arrays, paths, self.order_note = sort_npz_arrays(list(paths), arrays)
        profile_path, logcounts_path = paths[:2]
        self.mask_path = paths[2] if len(paths) == 3 else None
        require_numeric(arrays[0].dtype, f"{profile_path}: 'arr_0'", "the predicted profile logits")
        require_numeric(arrays[1].dtype, f"{logcounts_path}: 'arr_0'", "the predicted log counts")
        self.kept_mask = arrays[2].load() if len(paths) == 3 else None
        self._profile = arrays[0]
        self.inflates_here = arrays[0].compressed
        try:
            self._set_shapes(arrays[0].shape, arrays[1].load())
        except UsageError as err:
            raise InputError(f"{profile_path},{logcounts_path}: {err}; {_FIX}")
        if self.kept_mask is not None and int(self.kept_mask.sum()) != self.n:
            raise InputError(f"{self.mask_path}: the index mask keeps {int(self.kept_mask.sum())} loci but "
                             f"{profile_path} holds {self.n} predictions; give the mask bpnet predict wrote with "
                             "these predictions")
        self.profile_kind = "logits"
        self.path = ",".join(paths)

    def describe(self) -> dict:
        notes = [self.order_note] if self.order_note else []
        return {**super().describe(), "layout": "bpnet-lite .npz (arr_0: profile logits; arr_0: log counts"
                + ("; arr_0: index mask" if self.mask_path else "") + ")",
                "window_center": "midpoint (bpnet-lite 0.9 predict: tangermeme extract_loci)", "notes": notes}

    def read(self, i: int, j: int):
        """The batch's profile rows read from the file, and its log counts."""
        return self._profile.rows(i, j).reshape(j - i, self.n_tracks, self.length), np.array(self._logcounts[i:j])

    def close(self):
        self._profile.close()
