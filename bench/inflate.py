"""Inflate libraries on the data blocks of real bigWig files: zlib (the standard library) against ISA-L
(``isal``, what ``BigWigReader`` uses), libdeflate (``deflate``) and zlib-ng (``zlib-ng``), where installed
(``pip install -e '.[bench]'`` installs the last two).

    python bench/inflate.py FILE.bw [FILE.bw ...] [--blocks 1500] [--repeat 5]

Prints, per file, the best of ``--repeat`` passes over its first ``--blocks`` compressed blocks in
microseconds per block, and each library's speed-up over zlib; checks every library returns zlib's bytes.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bigwigs", nargs="+", type=Path)
    parser.add_argument("--blocks", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for path in args.bigwigs:
        reader = BigWigReader(str(path))
        if not reader._uncompress_buf_size:
            print(f"{path}: uncompressed, nothing to inflate")
            continue
        n = min(args.blocks, len(reader._block_offset))
        raws = [reader._pread(int(reader._block_offset[b]), int(reader._block_size[b])) for b in range(n)]
        found = libraries(reader._uncompress_buf_size)
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
        print(f"{path} ({n} blocks, {mean_kb:.1f} kB compressed each): "
              + ", ".join(f"{name} {us:.0f} us ({best['zlib'] / us:.2f}x)" for name, us in best.items()))
        reader.close()


if __name__ == "__main__":
    main()
