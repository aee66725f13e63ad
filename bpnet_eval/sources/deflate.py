"""zlib streams (bigWig data blocks, HDF5's gzip filter) inflated by ISA-L where it is installed, else by zlib.

ISA-L's inflate gives the same bytes as zlib's, 1.5-3.5x faster on bigWig blocks and ~1.3x on float64 HDF5
chunks (``bench/inflate.py``).
"""

import zlib

try:
    from isal.isal_zlib import decompress as inflate
    from isal.isal_zlib import error as _IsalError

    INFLATE_ERRORS = (_IsalError, zlib.error)
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel falls back
    inflate = zlib.decompress
    INFLATE_ERRORS = (zlib.error,)
