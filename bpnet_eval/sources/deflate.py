"""zlib streams (bigWig data blocks, HDF5's gzip filter) inflated by the fastest library installed.

``inflate``: ISA-L where installed, else zlib (bigWig data blocks: ISA-L is 1.5-3.5x zlib's speed and faster than
libdeflate there). ``inflate_sized``: a stream whose inflated size is known (an HDF5 chunk), by libdeflate where
installed (1.25x ISA-L, 1.6x zlib on float HDF5 chunks), else ``inflate``. ``raw_inflater``: an inflater of a raw
deflate stream read piece by piece whose state can be copied (a compressed ``.npz``: ``inflate.InflatedMember``),
zlib-ng's where installed (1.55x zlib on float32 logits; ISA-L's cannot be copied), else zlib's. Every library gives
the same bytes for a valid stream (``bench/inflate.py`` measures them; ``tests/test_hdf5_chunks.py`` and
``tests/test_npz_predictions.py`` check the bytes).
"""

import zlib

try:
    from isal.isal_zlib import decompress as inflate
    from isal.isal_zlib import error as _IsalError

    INFLATE_ERRORS = (_IsalError, zlib.error)
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel falls back
    inflate = zlib.decompress
    INFLATE_ERRORS = (zlib.error,)

try:
    from deflate import DeflateError as _DeflateError
    from deflate import zlib_decompress as _libdeflate_zlib

    INFLATE_ERRORS = (*INFLATE_ERRORS, _DeflateError)

    def inflate_sized(stored: bytes, size: int) -> bytes:
        """The zlib stream ``stored`` inflated, ``size`` bytes at most (libdeflate; a stream that inflates to more
        fails, one that inflates to fewer gives them)."""
        return _libdeflate_zlib(stored, size)
except ImportError:  # pragma: no cover - deflate is a dependency from Python 3.10; 3.9 has ISA-L
    def inflate_sized(stored: bytes, size: int) -> bytes:
        """The zlib stream ``stored`` inflated (``size``, its expected size, is checked by the caller)."""
        return inflate(stored)


def inflate_within(stored: bytes, size: int) -> bytes:
    """The zlib stream ``stored`` inflated: by ``inflate_sized`` where it inflates to at most ``size`` bytes (a bigWig
    block within its header's largest: libdeflate is 1.2-1.8x ISA-L on blocks of one float a base), else by
    ``inflate``."""
    try:
        return inflate_sized(stored, size)
    except INFLATE_ERRORS:
        return inflate(stored)


try:
    from zlib_ng.zlib_ng import decompressobj as _zlib_ng_decompressobj
    from zlib_ng.zlib_ng import error as _ZlibNgError

    INFLATE_ERRORS = (*INFLATE_ERRORS, _ZlibNgError)

    def raw_inflater():
        """zlib-ng's inflater of a raw deflate stream (``decompress(data, max_length)``, ``unconsumed_tail``,
        ``eof``, ``copy()``)."""
        return _zlib_ng_decompressobj(-zlib.MAX_WBITS)
except ImportError:  # pragma: no cover - zlib-ng is a dependency; a platform without its wheel falls back
    def raw_inflater():
        """zlib's inflater of a raw deflate stream."""
        return zlib.decompressobj(-zlib.MAX_WBITS)
