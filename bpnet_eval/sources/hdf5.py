"""Shared HDF5 helpers: read-only opening, dataset lookup and string decoding."""

import h5py
import numpy as np

from ..environment import hdf5_locking_disabled
from ..errors import InputError
from ..input_files import require_regular_file


def open_hdf5(path, allow_external: bool = False) -> h5py.File:
    """Open ``path`` read-only, retrying without file locking where the filesystem refuses locks
    (or at once when ``HDF5_USE_FILE_LOCKING=FALSE``); external links and virtual or externally
    stored datasets are refused on lookup unless ``allow_external``."""
    require_regular_file(path, "HDF5 file")  # before h5py opens it: a named pipe would block
    attempts = [{"locking": False}] if hdf5_locking_disabled() else [{}, {"locking": False}]
    for options in attempts:
        try:
            handle = h5py.File(path, "r", **options)
        except OSError as err:
            if options or "lock" not in str(err).lower():
                raise InputError(f"{path}: not a readable HDF5 file ({_first_line(err)}); "
                                 "check that the file is complete and is HDF5") from None
            continue
        handle.bpnet_eval_allow_external = allow_external
        return handle


def damaged(path, i: int, j: int, err) -> InputError:
    """The error for a read that failed inside an HDF5 file."""
    return InputError(f"{path}: cannot read regions {i + 1}..{j} ({_first_line(err)}); the file is damaged or "
                      "truncated; re-create it")


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _refuse(handle, name: str, what: str):
    raise InputError(f"{handle.filename}: '{name}' {what}, which could read other files; "
                     "copy the data into the file, or allow it with --allow-external-links")


def _local_path(handle: h5py.File, name: str, depth: int = 0, shown: str = ""):
    """``name`` with soft links resolved, or None when absent; refuses external links unless allowed."""
    shown = shown or name
    parts = [part for part in name.split("/") if part]
    for k in range(len(parts)):
        prefix = "/" + "/".join(parts[:k + 1])
        link = handle.get(prefix, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            if not getattr(handle, "bpnet_eval_allow_external", False):
                _refuse(handle, shown, f"is (or links to) an external link to {link.filename}:{link.path}")
            return "/".join([prefix] + parts[k + 1:])
        if isinstance(link, h5py.SoftLink):
            if depth > 32:
                raise InputError(f"{handle.filename}: '{shown}' is a loop of soft links; repair the file")
            base = link.path if link.path.startswith("/") else "/" + "/".join(parts[:k] + [link.path])
            return _local_path(handle, "/".join([base] + parts[k + 1:]), depth + 1, shown)
    return "/" + "/".join(parts)


def dataset_or_none(handle: h5py.File, name: str):
    """The dataset at ``name``, or None when there is none; virtual, externally stored and
    externally linked datasets raise InputError unless the file was opened allowing them."""
    path = _local_path(handle, name)
    obj = handle.get(path) if path else None
    if not isinstance(obj, h5py.Dataset):
        return None
    if not getattr(handle, "bpnet_eval_allow_external", False):
        if obj.is_virtual:
            _refuse(handle, name, "is a virtual dataset")
        if obj.external:
            _refuse(handle, name, f"stores its data in external file(s) {obj.external[0][0]!r}")
    return obj


def require_dataset(handle: h5py.File, name: str, fix: str) -> h5py.Dataset:
    """The dataset at ``name``, or an InputError naming the file, the dataset and the fix."""
    obj = dataset_or_none(handle, name)
    if obj is None:
        raise InputError(f"{handle.filename}: no dataset '{name}'; {fix}")
    return obj


def read_column(handle: h5py.File, name: str, n: int) -> np.ndarray:
    """The dataset at ``name`` as a flat array of ``n`` values; its shape is checked before reading."""
    data = require_dataset(handle, name, "give the regions with --regions")
    if int(np.prod(data.shape, dtype=np.float64)) != n:
        raise InputError(f"{handle.filename}: '{name}' has shape {data.shape} but there are {n} predictions; "
                         "give the regions with --regions")
    return data[()].reshape(-1)


def list_datasets(handle: h5py.File) -> list:
    """Names of every dataset in the file."""
    names = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def decode_strings(values) -> np.ndarray:
    """Variable-length UTF-8 or bytes strings as an object array of ``str``."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)],
                    dtype=object)
