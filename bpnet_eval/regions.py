"""Regions: one table of 0-based half-open windows, from BED, narrowPeak or stored coordinates, and the
genome names they are matched against (chromosome-name matching, used by every reader)."""

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .errors import InputError, UsageError
from .input_files import open_text

NARROWPEAK_COLUMNS = 10
REGION_FORMATS = ("auto", "bed", "narrowpeak")  # how a region file is read (--regions-format)
WINDOW_CENTERS = ("summit", "midpoint")  # where a window is centred (--window-center)
INT64_MAX = int(np.iinfo(np.int64).max)
_INTEGER = re.compile(r"[+-]?[0-9]+")
NO_REGIONS = "none (row numbers)"  # the source of a table made of row numbers only (no coordinates)


@dataclass
class Regions:
    """Windows scored, in prediction order: ``chrom[i]:start[i]-end[i]`` (0-based, half-open)."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    peak: Optional[np.ndarray] = None
    source: str = ""

    def __post_init__(self):
        self.chrom = np.asarray(self.chrom, dtype=object)
        self.start = np.asarray(self.start, dtype=np.int64)
        self.end = np.asarray(self.end, dtype=np.int64)
        if self.peak is not None:
            self.peak = np.asarray(self.peak).astype(bool)

    def __len__(self):
        return len(self.start)

    @classmethod
    def row_numbers(cls, n: int) -> "Regions":
        """A table of ``n`` rows without coordinates (predictions that store none, and no ``--regions``)."""
        return cls(np.array(["."] * n, dtype=object), np.zeros(n), np.zeros(n), None, NO_REGIONS)

    @property
    def has_coordinates(self) -> bool:
        return self.source != NO_REGIONS

    def label(self, i: int) -> str:
        """``chrom:start-end (region i+1)`` for messages."""
        return f"{self.chrom[i]}:{self.start[i]}-{self.end[i]} (region {i + 1})"

    def subset(self, rows) -> "Regions":
        """The regions at ``rows`` (a slice or an index array)."""
        peak = None if self.peak is None else self.peak[rows]
        return Regions(self.chrom[rows], self.start[rows], self.end[rows], peak, self.source)


def region_label(regions: Optional[Regions], i: int) -> str:
    """``chrom:start-end (region i+1)``, or ``region i+1`` when there are no coordinates."""
    return regions.label(i) if regions is not None and regions.has_coordinates else f"region {i + 1}"


def region_text(regions: Optional[Regions], i: int) -> str:
    """``chrom:start-end`` of row ``i``, or ``row i+1`` when there are no coordinates."""
    if regions is None or not regions.has_coordinates:
        return f"row {i + 1}"
    return f"{regions.chrom[i]}:{regions.start[i]}-{regions.end[i]}"


# ------------------------------------------------------------------- chromosome names
def chrom_key(name: str) -> str:
    """A chromosome name without its ``chr`` prefix, with ``MT`` and ``M`` both as ``M``."""
    base = name[3:] if name.lower().startswith("chr") else name
    return "M" if base.upper() in ("M", "MT") else base


def factorize(values) -> tuple:
    """``(codes, distinct)`` with ``distinct[codes[i]] == values[i]``, ``distinct`` in order of first appearance:
    one dict lookup per value, after which a per-row map costs one lookup per distinct value."""
    index = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return codes, list(index)


def match_chromosomes(wanted, available) -> tuple:
    """Map each wanted name to the available one: itself, else the unique name equal up to ``chr``/``M``/``MT``.

    Returns ``(mapping of every matched name, sorted list of unmatched names)``.
    """
    available = list(available)
    by_key = {}
    for name in available:
        by_key.setdefault(chrom_key(name), []).append(name)
    present = set(available)
    mapping, missing = {}, []
    for name in sorted(set(wanted)):
        candidates = [name] if name in present else by_key.get(chrom_key(name), [])
        if len(candidates) == 1:
            mapping[name] = candidates[0]
        else:
            missing.append(name)
    return mapping, missing


def windows_around(chrom, center, length: int, peak=None, source: str = "") -> Regions:
    """Windows ``center - L//2 .. center - L//2 + L`` (chrombpnet's ``center ± L/2``)."""
    start = np.asarray(center, dtype=np.int64) - length // 2
    return Regions(chrom, start, start + length, peak, source)


def _data_lines(lines):
    """Non-empty lines of a BED-like file that are not headers or comments, with line numbers."""
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text.strip() or text.startswith(("#", "track", "browser")):
            continue
        yield number, text.split("\t") if "\t" in text else text.split()


def _integer(text: str) -> Optional[int]:
    """The integer written in ``text`` (ASCII digits, optional sign), else None."""
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def _number_or_dot(text: str) -> bool:
    if text.strip() == ".":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _narrowpeak_shaped(fields) -> bool:
    """Whether a row reads as narrowPeak: 10 columns, numbers (or '.') in score, signalValue, pValue and qValue,
    and an integer summit offset in column 10."""
    return (len(fields) == NARROWPEAK_COLUMNS and _integer(fields[9]) is not None
            and all(_number_or_dot(fields[k]) for k in (4, 6, 7, 8)))


def _row_kind(fields) -> str:
    if _narrowpeak_shaped(fields):
        return "a narrowPeak row (10 columns, an integer summit offset in column 10)"
    if len(fields) == NARROWPEAK_COLUMNS:
        return (f"not a narrowPeak row (column 10 '{fields[9]}' is not an integer summit offset, or columns 5, 7-9 "
                "are not numbers)")
    return f"a BED row of {len(fields)} columns"


def _is_narrowpeak(path: Path, rows: list, regions_format: str) -> bool:
    """Whether the rows are read as narrowPeak: as ``regions_format`` says, or (``auto``) when every row reads
    as narrowPeak; a file whose rows disagree is an error naming the first row unlike most others."""
    if regions_format != "auto":
        return regions_format == "narrowpeak"
    shaped = [_narrowpeak_shaped(fields) for _, fields in rows]
    n_shaped = sum(shaped)
    if n_shaped in (0, len(rows)):
        return n_shaped > 0
    usual = n_shaped * 2 > len(rows) or (n_shaped * 2 == len(rows) and shaped[0])
    k = shaped.index(not usual)
    number, fields = rows[k]
    most = n_shaped if usual else len(rows) - n_shaped
    raise InputError(f"{path}: line {number} is {_row_kind(fields)}, but {most} of the {len(rows)} rows are "
                     f"{'narrowPeak' if usual else 'BED'}; fix that line, or say how to read every row with "
                     "--regions-format narrowpeak (window = start + summit ± L/2) or --regions-format bed "
                     "(window = start..end)")


def _region_rows(path: Path) -> list:
    """The data rows of a region file (plain, gzip or bgzip) with their line numbers."""
    try:
        with open_text(path, "region file") as handle:
            rows = list(_data_lines(handle))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the region file ({err}); give a readable BED or narrowPeak file "
                         "(plain or gzip-compressed)")
    if not rows:
        raise InputError(f"{path}: the region file holds no regions; give a BED or narrowPeak file with one row per prediction")
    return rows


def _bounds(path: Path, rows: list) -> list:
    """``(start, end)`` of every row, checked to be integers with ``0 <= start <= end`` that fit in int64."""
    bounds = []
    for number, fields in rows:
        if len(fields) < 3:
            raise InputError(f"{path}: line {number} has {len(fields)} column(s); a BED row needs chrom, start, end")
        s, e = _integer(fields[1]), _integer(fields[2])
        if s is None or e is None:
            raise InputError(f"{path}: line {number}: start/end are not integers; "
                             "remove header lines or prefix them with '#'")
        if s < 0 or e < s:
            raise InputError(f"{path}: line {number}: {fields[0]}:{s}-{e} is not a valid interval (need 0 <= start <= end)")
        if e > INT64_MAX:
            raise InputError(f"{path}: line {number}: {fields[0]}:{s}-{e} does not fit in 64-bit integers (a "
                             f"coordinate above {INT64_MAX}); fix the line")
        bounds.append((s, e))
    return bounds


def _summit(path: Path, number: int, fields, s: int, e: int) -> int:
    """The summit offset (column 10) of a narrowPeak row, checked to lie inside its peak."""
    has_summit = len(fields) >= NARROWPEAK_COLUMNS
    summit = _integer(fields[9]) if has_summit else None
    if summit is None:
        found = f"'{fields[9]}'" if has_summit else f"missing ({len(fields)} columns)"
        raise InputError(f"{path}: line {number}: the summit offset (column 10) is {found}, not an integer; "
                         "a narrowPeak row has 10 columns; fix the line, or read the file as BED windows "
                         "(start..end) with --regions-format bed")
    if not 0 <= summit <= e - s:
        raise InputError(f"{path}: line {number}: summit offset {summit} (column 10) lies outside its peak "
                         f"{fields[0]}:{s}-{e} (offsets 0..{e - s}); fix the summit, or read the file as BED "
                         "windows (start..end) with --regions-format bed")
    return summit


def _checked_choice(value, choices, option: str) -> Optional[str]:
    if value is None:
        return None
    text = str(getattr(value, "value", value)).lower()
    if text not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, not '{text}'")
    return text


def read_region_file(path, length: int, regions_format: str = "auto", window_center: Optional[str] = None,
                     chroms=None) -> Regions:
    """Read a BED (window = start..end) or narrowPeak (window = start + summit ± L/2) file, plain or gzipped.

    Parameters
    ----------
    path : str or Path
        BED3+ or narrowPeak file, one row per prediction, in prediction order (gzip/bgzip read directly).
    length : int
        L, the number of predicted positions per region (0 when unknown: only BED windows can be read).
    regions_format : {"auto", "bed", "narrowpeak"}
        How the rows are read. ``auto`` (default): narrowPeak when every row reads as narrowPeak (10 columns,
        numbers in columns 5 and 7-9, an integer summit offset in column 10), BED when none does; a file
        whose rows disagree is an error naming the first odd line. ``narrowpeak``: every row's column 10 is
        its summit offset (extra columns ignored). ``bed``: every row is ``start..end``.
    window_center : {"summit", "midpoint"}, optional
        Where each window of L is centred: ``summit`` (narrowPeak only: start + summit), ``midpoint``
        (start + (end - start) // 2, tangermeme's ``extract_loci``); default: the summit of a narrowPeak
        row, the row itself (start..end) for BED.
    chroms : sequence of str, optional
        Keep only rows on these chromosomes (bpnet-lite's ``chroms``, applied before anything else).

    Returns
    -------
    regions : Regions
    """
    path = Path(path)
    regions_format = _checked_choice(regions_format, REGION_FORMATS, "--regions-format") or "auto"
    window_center = _checked_choice(window_center, WINDOW_CENTERS, "--window-center")
    table = _read_plain_table(path, length, regions_format, window_center, chroms)
    return table if table is not None else _read_rows(path, length, regions_format, window_center, chroms)


def _window_center(path: Path, narrowpeak: bool, window_center: Optional[str], length: int) -> Optional[str]:
    """Where the windows are centred (None: start..end), checked against the file's kind and L."""
    if window_center == "summit" and not narrowpeak:
        raise UsageError(f"{path}: --window-center summit needs narrowPeak rows (a summit offset in column 10); "
                         "this file is read as BED: use --window-center midpoint, or give the narrowPeak file")
    center = window_center or ("summit" if narrowpeak else None)
    if center and not length:
        raise UsageError(f"{path}: windows centred on the {center} need the predicted length L, which these "
                         "predictions do not store; give it with --length L")
    return center


def _table(path: Path, chrom, start, end, narrowpeak: bool, center: Optional[str], chroms, n_rows: int) -> Regions:
    """The windows read, with their source: the file, its kind, the centring and the chromosome filter."""
    kind = "narrowPeak" if narrowpeak else "BED"
    how = {"summit": "start + summit ± L/2", "midpoint": "midpoint ± L/2", None: "start..end"}[center]
    where = "" if chroms is None else f"; chromosomes {','.join(chroms)}: {len(start)} of {n_rows} rows"
    return Regions(np.array(chrom, dtype=object), start, end, None, f"{path} [{kind} ({how}){where}]")


def _read_rows(path: Path, length: int, regions_format: str, window_center: Optional[str], chroms) -> Regions:
    """``read_region_file`` row by row: any file, every problem named by its line."""
    rows = _region_rows(path)
    bounds = _bounds(path, rows)
    narrowpeak = _is_narrowpeak(path, rows, regions_format)
    center = _window_center(path, narrowpeak, window_center, length)
    keep = None if chroms is None else set(chroms)
    chrom, start, end = [], [], []
    for (number, fields), (s, e) in zip(rows, bounds):
        if keep is not None and fields[0] not in keep:
            continue
        if center is not None:
            middle = s + _summit(path, number, fields, s, e) if center == "summit" else s + (e - s) // 2
            s = middle - length // 2
            e = s + length
            if e > INT64_MAX:
                raise InputError(f"{path}: line {number}: the window {fields[0]}:{s}-{e} does not fit in 64-bit "
                                 f"integers (a coordinate above {INT64_MAX}); fix the line")
        chrom.append(fields[0])
        start.append(s)
        end.append(e)
    return _table(path, chrom, start, end, narrowpeak, center, chroms, len(rows))


# Digits of the coordinates the column-wise reading takes (sums of two such stay far inside int64).
_PLAIN_DIGITS = 18
_TAB, _NEWLINE, _RETURN, _HASH, _DOT, _MINUS, _ZERO = (ord(c) for c in "\t\n\r#.-0")


class _Fields(NamedTuple):
    """The tab-separated fields of a region file's text as byte ranges: ``data[starts[r, k]:ends[r, k]]`` is field
    ``k`` of row ``r``."""

    data: np.ndarray    # the text's UTF-8 bytes (uint8), with as many zero bytes around as the widest field
    starts: np.ndarray  # (n_rows, n_columns)
    ends: np.ndarray    # (n_rows, n_columns)

    def matrix(self, k: int, right: bool = False):
        """Column ``k``'s bytes as rows of one width (its longest field), padded with 0 after each field (before it
        with ``right``), and the mask of the bytes that are the field's."""
        starts, ends = self.starts[:, k], self.ends[:, k]
        lengths = ends - starts
        width = int(lengths.max()) if len(lengths) else 0
        windows = np.lib.stride_tricks.sliding_window_view(self.data, max(1, width))[:, :width]
        offsets = np.arange(width)
        inside = offsets >= (width - lengths)[:, None] if right else offsets < lengths[:, None]
        return np.where(inside, windows[ends - width if right else starts], 0).astype(np.uint8), inside

    def strings(self, k: int) -> np.ndarray:
        """Column ``k`` as str (an object array), each distinct value decoded once (no field holds a NUL)."""
        padded, _ = self.matrix(k)
        if not padded.size:
            return np.array([""] * len(padded), dtype=object)
        packed = np.ascontiguousarray(padded).view(f"S{padded.shape[1]}")[:, 0]
        distinct, codes = np.unique(packed, return_inverse=True)
        return np.array([value.decode() for value in distinct], dtype=object)[codes.reshape(-1)]

    def plain_integers(self, k: int) -> Optional[np.ndarray]:
        """int64 of column ``k`` where every field is a non-negative integer written as ASCII digits alone (at most
        ``_PLAIN_DIGITS``), else None."""
        lengths = self.ends[:, k] - self.starts[:, k]
        if not len(lengths) or lengths.min() == 0 or lengths.max() > _PLAIN_DIGITS:
            return None
        padded, inside = self.matrix(k, right=True)
        digits = padded.astype(np.int64) - _ZERO
        if ((digits < 0) | (digits > 9))[inside].any():
            return None
        digits[~inside] = 0
        return digits @ (10 ** np.arange(padded.shape[1] - 1, -1, -1, dtype=np.int64))

    def numbers_or_dots(self, k: int) -> bool:
        """Every field of column ``k`` a number or '.' (``_number_or_dot``): at once where each is '.' or a plain
        decimal (an optional leading '-', digits and at most one '.'), else field by field."""
        padded, inside = self.matrix(k)
        digits = ((padded >= _ZERO) & (padded <= _ZERO + 9)).sum(axis=1)
        dots, minus = (padded == _DOT).sum(axis=1), (padded == _MINUS).sum(axis=1)
        lengths = inside.sum(axis=1)
        first = padded[:, 0] if padded.shape[1] else np.zeros(len(padded), np.uint8)
        plain = ((digits + dots + minus == lengths) & (dots <= 1) & (minus == (first == _MINUS))
                 & ((digits > 0) | ((lengths == 1) & (dots == 1))))
        return bool(plain.all()) or all(map(_number_or_dot, self.strings(k)))


def _uniform_fields(text: str) -> Optional[_Fields]:
    """The fields of a region file's lines (``_Fields``), where every line (ending with a newline, but maybe the
    last) holds the same number (3 or more) of tab-separated fields and none is blank, a comment, a header or has
    a carriage return or a NUL; else None."""
    if not text or text.startswith(("#", "track", "browser")):
        return None
    text = text if text.endswith("\n") else text + "\n"
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    if ((data == _RETURN) | (data == 0)).any():
        return None
    separators = np.flatnonzero((data == _TAB) | (data == _NEWLINE))
    line_ends = np.flatnonzero(data[separators] == _NEWLINE)  # a blank line: a line of one field
    n_columns = int(line_ends[0]) + 1
    if n_columns < 3 or len(separators) % n_columns or \
            not np.array_equal(line_ends, np.arange(n_columns - 1, len(separators), n_columns)):
        return None
    starts = np.concatenate([[0], separators[:-1] + 1]).reshape(-1, n_columns)
    ends = separators.reshape(-1, n_columns)
    margin = int((ends - starts).max())
    if margin > 1 << 16:
        return None  # a field of 64 kB: read row by row
    suspects = np.flatnonzero(np.isin(data[starts[:, 0]], (_HASH, ord("t"), ord("b"))))
    if any(data[starts[r, 0]:ends[r, 0]].tobytes().startswith((b"#", b"track", b"browser")) for r in suspects):
        return None  # a comment or a header line
    padded = np.concatenate([np.zeros(margin, np.uint8), data, np.zeros(margin, np.uint8)])
    return _Fields(padded, starts + margin, ends + margin)


def _read_plain_table(path: Path, length: int, regions_format: str, window_center: Optional[str],
                      chroms) -> Optional[Regions]:
    """``read_region_file`` column by column, for the usual file (tab-separated, every row with the same columns,
    coordinates and summits plain non-negative integers, nothing to report); None for any other file, which
    ``_read_rows`` then reads (and names the line of any problem). The windows are the same either way."""
    try:
        with open_text(path, "region file") as handle:
            text = handle.read()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        return None
    fields = _uniform_fields(text)
    if fields is None:
        return None
    n_rows, n_columns = fields.starts.shape
    start, end = fields.plain_integers(1), fields.plain_integers(2)
    if start is None or end is None or (end < start).any():
        return None
    summit = fields.plain_integers(9) if n_columns >= NARROWPEAK_COLUMNS else None
    if regions_format != "auto":
        narrowpeak = regions_format == "narrowpeak"
    elif n_columns != NARROWPEAK_COLUMNS:
        narrowpeak = False
    elif summit is not None and all(fields.numbers_or_dots(k) for k in (4, 6, 7, 8)):
        narrowpeak = True
    else:
        return None  # some or none of the rows read as narrowPeak: decided (or refused) row by row
    center = _window_center(path, narrowpeak, window_center, length)
    chrom = fields.strings(0)
    if chroms is not None:
        keep = set(chroms)
        kept = np.fromiter((name in keep for name in chrom), dtype=bool, count=n_rows)
        chrom, start, end, summit = chrom[kept], start[kept], end[kept], None if summit is None else summit[kept]
    if center == "summit":
        if summit is None or (summit > end - start).any():
            return None  # a summit to report
        start = start + summit - length // 2
    elif center == "midpoint":
        start = start + (end - start) // 2 - length // 2
    if center is not None:
        end = start + length
    return _table(path, chrom, start, end, narrowpeak, center, chroms, n_rows)


def region_paths(regions) -> list:
    """The region files named by ``regions``: one path, comma-separated paths, or a list of paths."""
    if isinstance(regions, (list, tuple)):
        return [str(p) for p in regions]
    return [p.strip() for p in str(regions).split(",") if p.strip()]


def interleave(tables: list) -> Regions:
    """Rows of several tables interleaved as tangermeme's ``extract_loci`` does: row k of table i goes to
    position ``k * len(tables) + i`` of the order (a longer table's extra rows follow at the end)."""
    if len(tables) == 1:
        return tables[0]
    keys = np.concatenate([np.arange(len(t), dtype=np.int64) * len(tables) + i for i, t in enumerate(tables)])
    order = np.argsort(keys, kind="stable")
    chrom = np.concatenate([t.chrom for t in tables])[order]
    start = np.concatenate([t.start for t in tables])[order]
    end = np.concatenate([t.end for t in tables])[order]
    return Regions(chrom, start, end, None, "; ".join(t.source for t in tables) + " [interleaved as tangermeme's "
                   "extract_loci: one row of each file in turn]")


def apply_mask(table: Regions, kept: np.ndarray, mask_path: str) -> Regions:
    """The rows of ``table`` that ``kept`` (bpnet-lite's index mask: one flag per interleaved locus) keeps."""
    kept = np.asarray(kept).reshape(-1).astype(bool)
    if len(kept) != len(table):
        raise InputError(f"{mask_path}: the index mask has {len(kept)} entries but the region file(s) give "
                         f"{len(table)} loci; give the loci files in the order bpnet predict read them, and "
                         "--chroms as its 'chroms' parameter (bpnet-lite 0.9 predicts on its training "
                         "chromosomes unless the JSON names others)")
    kept_table = table.subset(np.flatnonzero(kept))
    kept_table.source = f"{table.source} [index mask {mask_path}: {int(kept.sum())} of {len(kept)} loci kept]"
    return kept_table


def read_regions(regions, length: int, regions_format: str = "auto", window_center: Optional[str] = None,
                 chroms=None, kept=None, mask_path: str = "") -> Regions:
    """The windows of one or more region files (interleaved as ``interleave`` says), optionally filtered by
    chromosome (before interleaving) and by an index mask ``kept`` (after), in prediction order."""
    paths = region_paths(regions)
    if not paths:
        raise UsageError("--regions names no file; give a BED or narrowPeak file")
    table = interleave([read_region_file(p, length, regions_format, window_center, chroms) for p in paths])
    return table if kept is None else apply_mask(table, kept, mask_path)
