"""Predictions saved as NumPy ``.npz`` files (bpnet-lite 0.9 ``bpnet predict``: profile logits
``arr_0`` (N, S, L) in one file, log counts ``arr_0`` (N, 1) in another, and the index mask ``arr_0`` (n0,)
bool in a third (``…idx.npy.npz``: which of the interleaved loci were predicted); no coordinates).

The files are told apart by their arrays (3-D: the profile; one value per region: the log counts; 1-D
booleans: the mask), so files given in another order are read correctly, with a note saying so. bpnet-lite
builds its windows with tangermeme's ``extract_loci``: the midpoint of each locus ± L/2, loci files
interleaved, so these predictions default to ``--window-center midpoint`` (``window_center``).

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
    optional third (regions via --regions: the loci files bpnet predict read, interleaved, then masked)."""

    window_center = "midpoint"  # tangermeme's extract_loci: the midpoint of each locus ± L/2

    def __init__(self, paths, memory_limit: Optional[int] = None):
        memory_limit = memory_limit_bytes() if memory_limit is None else memory_limit
        arrays = [open_npz_array(p, memory_limit) for p in paths]
        arrays, paths, self.order_note = sort_npz_arrays(list(paths), arrays)
        profile_path, logcounts_path = paths[:2]
        self.mask_path = paths[2] if len(paths) == 3 else None
        self.kept_mask = np.asarray(arrays[2]) if len(paths) == 3 else None
        require_numeric(arrays[0].dtype, f"{profile_path}: 'arr_0'", "the predicted profile logits")
        require_numeric(arrays[1].dtype, f"{logcounts_path}: 'arr_0'", "the predicted log counts")
        try:
            super().__init__(arrays[0], arrays[1])
        except UsageError as err:
            raise InputError(f"{profile_path},{logcounts_path}: {err}; {_FIX}")
        if self.kept_mask is not None and int(self.kept_mask.sum()) != self.n:
            raise InputError(f"{self.mask_path}: the index mask keeps {int(self.kept_mask.sum())} loci but "
                             f"{profile_path} holds {self.n} predictions; give the mask bpnet predict wrote with "
                             "these predictions")
        self.path = ",".join(paths)

    def describe(self) -> dict:
        notes = [self.order_note] if self.order_note else []
        return {**super().describe(), "layout": "bpnet-lite .npz (arr_0: profile logits; arr_0: log counts"
                + ("; arr_0: index mask" if self.mask_path else "") + ")",
                "window_center": "midpoint (bpnet-lite 0.9 predict: tangermeme extract_loci)", "notes": notes}

    def read(self, i: int, j: int):
        """The batch copied out of the (read-only) memory map."""
        return tuple(np.array(part) for part in super().read(i, j))
