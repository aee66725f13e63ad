"""Predictions saved as NumPy ``.npz`` files (bpnet-lite 0.9 ``bpnet predict``: profile logits
``arr_0`` (N, S, L) in one file, log counts ``arr_0`` (N, 1) in another; no coordinates).

Arrays stored uncompressed (``np.savez``) are memory-mapped, so batches are read as needed;
compressed ones (``np.savez_compressed``) are loaded once, after their size is checked. Nothing is
ever unpickled (object arrays are refused).
"""

import os
import struct
import zipfile
from typing import Optional

import numpy as np

from ..environment import memory_limit_bytes
from ..errors import InputError, UsageError
from ..input_files import UNEXPECTED_READ_ERRORS, error_reason, require_regular_file
from .predictions import ArrayPredictions, require_numeric

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header (30 bytes)
_FIX = "give the .npz files that bpnet-lite's predict wrote (profile logits, then log counts)"


def npz_prediction_paths(predictions) -> Optional[list]:
    """``[profile.npz, logcounts.npz]`` when ``predictions`` names two .npz files (a list, or one
    comma-separated string), else None."""
    if isinstance(predictions, (str, os.PathLike)):
        parts = [p.strip() for p in str(predictions).split(",")]
    elif isinstance(predictions, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in predictions):
        parts = [str(p) for p in predictions]
    else:
        return None
    flags = [p.lower().endswith(".npz") for p in parts]
    if not any(flags):
        return None
    if len(parts) != 2 or not all(flags):
        raise UsageError(f"PREDICTIONS '{','.join(parts)}': .npz predictions are two files, the profile logits "
                         "and the log counts, comma-separated (logits.npz,logcounts.npz)")
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


def open_npz_array(path: str, memory_limit: int, what: Optional[str] = None) -> np.ndarray:
    """The array of a .npz file: memory-mapped when stored uncompressed, else loaded (if it fits).

    With ``what`` (``"the predicted logits"``), an array that is not real numbers is refused before it is read.
    """
    require_regular_file(path, ".npz file")  # before zipfile opens it: a named pipe would block
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member(archive, path)
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as handle:
                    handle.seek(info.header_offset)
                    header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
                    handle.seek(info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1])
                    shape, fortran_order, dtype = _read_header(handle, path)
                    offset = handle.tell()
                if what:
                    require_numeric(dtype, f"{path}: '{info.filename[:-4]}'", what)
                return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                                 order="F" if fortran_order else "C")
            with archive.open(info) as member:
                shape, _, dtype = _read_header(member, path)
                if what:
                    require_numeric(dtype, f"{path}: '{info.filename[:-4]}'", what)
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if nbytes > memory_limit // 2:
                    raise InputError(f"{path}: a compressed array of {nbytes / 2**30:.1f} GiB does not fit in memory "
                                     "here; save it uncompressed (np.savez), which is read in batches")
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path")
    except (zipfile.BadZipFile, struct.error, ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable .npz file ({err}); {_FIX}")
    except UNEXPECTED_READ_ERRORS as err:
        raise InputError(f"{path}: not a readable .npz file ({error_reason(err)}); {_FIX}") from None


class NpzPredictions(ArrayPredictions):
    """bpnet-lite 0.9 predictions: profile logits and log counts in two .npz files (regions via --regions)."""

    def __init__(self, paths, memory_limit: Optional[int] = None):
        profile_path, logcounts_path = paths
        memory_limit = memory_limit_bytes() if memory_limit is None else memory_limit
        try:
            super().__init__(open_npz_array(profile_path, memory_limit, "the predicted profile logits"),
                             open_npz_array(logcounts_path, memory_limit, "the predicted log counts"))
        except UsageError as err:
            raise InputError(f"{profile_path},{logcounts_path}: {err}; {_FIX}")
        self.path = f"{profile_path},{logcounts_path}"

    def describe(self) -> dict:
        return {**super().describe(), "layout": "bpnet-lite .npz (arr_0: profile logits; arr_0: log counts)"}

    def read(self, i: int, j: int):
        """The batch copied out of the (read-only) memory map."""
        return tuple(np.array(part) for part in super().read(i, j))
