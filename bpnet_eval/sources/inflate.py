"""A zip member compressed with deflate (``np.savez_compressed``), read at any output position without inflating
it whole or holding it: ``InflatedMember.read_into(position, buffer)``.

Deflate has no index, so reading forward is cheap and reading back means inflating again from the start. It is
inflated by ``deflate.raw_inflater`` (zlib-ng where installed: the same bytes as zlib, faster), and as it inflates the
stream keeps a checkpoint every ``CHECKPOINT_BYTES`` of output (where the inflater has used all the compressed bytes
it was given: the file position, a copy of the inflater's state, the CRC-32 so far; ~45 KB each), kept per file for
the process (``_CHECKPOINTS``, the last ``CHECKPOINT_FILES`` files), so a read behind the position, or a reopened
file's read (the report's example regions after a run), inflates from the nearest checkpoint before it.
The member's size and CRC-32 (from the zip's central directory) are checked when its end is inflated.
"""

import os
import struct
import zipfile
import zlib
from collections import OrderedDict

from ..errors import InputError
from ..input_files import open_regular_fd
from .deflate import INFLATE_ERRORS, raw_inflater

PIECE_BYTES = 1 << 20             # compressed bytes read at a time, and the most inflated at a time
CHECKPOINT_BYTES = 32 << 20       # output between two checkpoints
CHECKPOINT_FILES = 8              # files whose checkpoints are kept
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header (30 bytes)
_CHECKPOINTS: "OrderedDict[tuple, dict]" = OrderedDict()  # file identity -> {output position: (file position, state, crc)}


def member_data_start(fd: int, info: zipfile.ZipInfo, path: str, fix: str) -> int:
    """Where the (stored or compressed) data of the zip member ``info`` begin in the file open as ``fd``: after its
    local header, whose name and extra field lengths may differ from the central directory's."""
    header = _LOCAL_HEADER.unpack(os.pread(fd, _LOCAL_HEADER.size, info.header_offset))
    if header[0] != b"PK\x03\x04":
        raise InputError(f"{path}: no zip member header where '{info.filename}' should start; {fix}")
    return info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1]


class InflatedMember:
    """The deflated member ``info`` of the zip file ``path``, inflated on demand (``read_into``)."""

    def __init__(self, path: str, info: zipfile.ZipInfo, fix: str):
        self.path, self.size, self.crc, self.fix = path, info.file_size, info.CRC, fix
        if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 1:
            raise InputError(f"{path}: '{info.filename}' is {'encrypted' if info.flag_bits & 1 else 'compressed'} "
                             f"in a way numpy never writes (zip method {info.compress_type}); {fix}")
        self._fd = open_regular_fd(path, ".npz file")
        try:
            start = member_data_start(self._fd, info, path, fix)
            self._end = start + info.compress_size
            stat = os.fstat(self._fd)
            key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, info.header_offset)
        except BaseException:
            os.close(self._fd)
            raise
        self._points = _CHECKPOINTS.pop(key, None) or {0: (start, raw_inflater(), 0)}
        _CHECKPOINTS[key] = self._points  # the most recently used last
        while len(_CHECKPOINTS) > CHECKPOINT_FILES:
            _CHECKPOINTS.popitem(last=False)
        self._restart(0)

    def _restart(self, position: int) -> None:
        """Inflate again from the last checkpoint at or before ``position``."""
        at = self._checkpoint_before(position)
        self._file_position, state, self._crc = self._points[at]
        self._inflater = state.copy()
        self._produced = at               # output inflated so far
        self._pending = memoryview(b"")   # the inflated output not yet used, from ``_pending_at``
        self._pending_at = at

    def _checkpoint_before(self, position: int) -> int:
        """The output position of the last checkpoint at or before ``position`` (the file's checkpoints are shared
        with other readers of it: listed at once, never iterated while one may add to them)."""
        return max(p for p in list(self._points) if p <= position)

    def read_into(self, position: int, view: memoryview) -> None:
        """Fill ``view`` with the output from ``position`` on (an InputError where the member is damaged or ends
        before it is filled)."""
        ahead = self._checkpoint_before(position)
        if position < self._pending_at or ahead > self._pending_at + len(self._pending):
            self._restart(position)
        done = 0
        while done < len(view):
            offset = position + done - self._pending_at
            if offset < len(self._pending):
                take = min(len(self._pending) - offset, len(view) - done)
                view[done:done + take] = self._pending[offset:offset + take]
                done += take
            else:
                self._pending_at += len(self._pending)
                self._pending = memoryview(self._inflate())
        if position + len(view) == self.size:
            while not self._inflater.eof:  # the end: the size and CRC-32 are checked there
                self._inflate()

    def _inflate(self) -> bytes:
        """The next piece of output (possibly empty)."""
        compressed = self._inflater.unconsumed_tail
        if not compressed:
            if self._inflater.eof or self._file_position >= self._end:
                raise InputError(f"{self.path}: the compressed array ends early (at {self._produced} of "
                                 f"{self.size} bytes); {self.fix}")
            if self._produced - max(list(self._points)) >= CHECKPOINT_BYTES:
                self._points[self._produced] = (self._file_position, self._inflater.copy(), self._crc)
            compressed = os.pread(self._fd, min(PIECE_BYTES, self._end - self._file_position), self._file_position)
            if not compressed:
                raise InputError(f"{self.path}: the file ends inside its compressed array; {self.fix}")
            self._file_position += len(compressed)
        try:
            output = self._inflater.decompress(compressed, PIECE_BYTES)
        except INFLATE_ERRORS as err:
            raise InputError(f"{self.path}: the compressed array is damaged ({err}); {self.fix}") from None
        self._crc = zlib.crc32(output, self._crc)
        self._produced += len(output)
        if self._produced > self.size or (self._inflater.eof and (self._produced, self._crc) != (self.size, self.crc)):
            raise InputError(f"{self.path}: the compressed array does not match its zip entry's size and CRC-32 "
                             f"(damaged); {self.fix}")
        return output

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
