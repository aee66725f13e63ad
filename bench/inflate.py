"""Inflate libraries on the data blocks of real bigWig files and the chunks of gzip-compressed HDF5 files: zlib
(the standard library) against ISA-L (``isal``, what ``BigWigReader`` uses), libdeflate (``deflate``, what
``sources.chunks`` uses for HDF5 chunks) and zlib-ng (``zlib-ng``, what compressed ``.npz`` predictions are inflated
with), each where installed (all three are the project's dependencies).

    python bench/inflate.py FILE.bw|FILE.h5 [...] [--blocks 1500] [--repeat 5]

Prints, per file, the best of ``--repeat`` passes over its first ``--blocks`` compressed blocks (of an HDF5 file:
chunks of its largest gzip-compressed dataset) in microseconds per block and MB/s of inflated bytes, and each
library's speed-up over zlib; checks every library returns zlib's bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bpnet_eval.sources.bigwig import BigWigReader  # noqa: E402


def libraries(buffer_size: int) -> dict:
    """``{name: decompress(bytes) -> bytes}`` of the inflate libraries installed here."""
    found = {"zlib": zlib.decompress}
    try:
        from isal import isal_zlib

        found["isal"] = isal_zlib.decompress
    except ImportError:
        pass
    try:
        import deflate

        found["libdeflate"] = lambda raw: deflate.zlib_decompress(raw, buffer_size)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        found["zlib-ng"] = zlib_ng.decompress
    except ImportError:
        pass
    return found


def bigwig_blocks(path: Path, count: int):
    """The first ``count`` compressed data blocks of a bigWig and its inflated block size, or None if uncompressed."""
    reader = BigWigReader(str(path))
    try:
        if not reader._uncompress_buf_size:
            return None
        n = min(count, len(reader._block_offset))
        return [reader._pread(int(reader._block_offset[b]), int(reader._block_size[b])) for b in range(n)], \
            reader._uncompress_buf_size
    finally:
        reader.close()


def hdf5_chunks(path: Path, count: int):
    """The first ``count`` stored chunks of the largest gzip-compressed dataset of an HDF5 file and its chunk size in
    bytes, or None if it has none."""
    import h5py
    import numpy as np

    from bpnet_eval.sources.chunks import DEFLATE

    with h5py.File(path, "r") as h5:
        found = []
        h5.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.chunks and any(
            obj.id.get_create_plist().get_filter(k)[0] == DEFLATE
            for k in range(obj.id.get_create_plist().get_nfilters())) else None)
        if not found:
            return None
        dataset = max(found, key=lambda d: d.size)
        offsets = []
        dataset.id.chunk_iter(lambda info: offsets.append(info.chunk_offset) if len(offsets) < count else None)
        return [dataset.id.read_direct_chunk(offset)[1] for offset in offsets], \
            int(np.prod(dataset.chunks)) * dataset.dtype.itemsize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="bigWig or HDF5 files")
    parser.add_argument("--blocks", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for path in args.files:
        hdf5 = path.suffix.lower() in (".h5", ".hdf5")
        blocks = (hdf5_chunks if hdf5 else bigwig_blocks)(path, args.blocks)
        if blocks is None:
            print(f"{path}: uncompressed, nothing to inflate")
            continue
        raws, buffer_size = blocks
        n = len(raws)
        found = libraries(buffer_size)
        expected = [zlib.decompress(raw) for raw in raws]
        best = {name: float("inf") for name in found}
        for _ in range(args.repeat):  # interleaved, so that a busy moment hits every library alike
            for name, inflate in found.items():
                began = time.perf_counter()
                out = [inflate(raw) for raw in raws]
                best[name] = min(best[name], (time.perf_counter() - began) / n * 1e6)
                if out != expected:
                    raise SystemExit(f"{name} does not return zlib's bytes on {path}")
        mean_kb = sum(map(len, raws)) / n / 1024
        inflated = sum(map(len, expected)) / n
        print(f"{path} ({n} {'chunks' if hdf5 else 'blocks'}, {mean_kb:.1f} kB compressed each): "
              + ", ".join(f"{name} {us:.0f} us {inflated / us:.0f} MB/s ({best['zlib'] / us:.2f}x)"
                          for name, us in best.items()))


if __name__ == "__main__":
    main()
