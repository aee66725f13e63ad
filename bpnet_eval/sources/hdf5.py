"""Shared HDF5 helpers: read-only opening, dataset lookup and string decoding."""

import os

import h5py
import numpy as np

from ..errors import InputError


def open_hdf5(path) -> h5py.File:
    """Open ``path`` read-only, retrying without file locking where the filesystem refuses locks."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if "lock" in str(err).lower():
            try:
                return h5py.File(path, "r", locking=False)
            except (OSError, TypeError):
                pass
        raise InputError(f"{path}: not a readable HDF5 file ({_first_line(err)}); "
                         "check that the file is complete and is HDF5")


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def dataset_or_none(handle: h5py.File, name: str):
    """The dataset at ``name``, or None when there is none."""
    obj = handle.get(name)
    return obj if isinstance(obj, h5py.Dataset) else None


def require_dataset(handle: h5py.File, name: str, fix: str) -> h5py.Dataset:
    """The dataset at ``name``, or an InputError naming the file, the dataset and the fix."""
    obj = dataset_or_none(handle, name)
    if obj is None:
        raise InputError(f"{handle.filename}: no dataset '{name}'; {fix}")
    return obj


def list_datasets(handle: h5py.File) -> list:
    """Names of every dataset in the file."""
    names = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def decode_strings(values) -> np.ndarray:
    """Variable-length UTF-8 or bytes strings as an object array of ``str``."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)],
                    dtype=object)
