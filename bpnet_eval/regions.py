"""Regions: one table of 0-based half-open windows, from BED, narrowPeak or stored coordinates, and the
genome names they are matched against (chromosome-name matching, used by every reader)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError

NARROWPEAK_COLUMNS = 10
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


def _data_lines(path: Path):
    """Non-empty lines of a BED-like file that are not headers or comments, with line numbers."""
    with open(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip() or text.startswith(("#", "track", "browser")):
                continue
            yield number, text.split("\t") if "\t" in text else text.split()


def read_region_file(path, length: int) -> Regions:
    """Read a BED (window = start..end) or 10-column narrowPeak (window = start + summit ± L/2).

    Parameters
    ----------
    path : str or Path
        BED3+ or narrowPeak file, one row per prediction, in prediction order.
    length : int
        L, the number of predicted positions per region.

    Returns
    -------
    regions : Regions
    """
    path = Path(path)
    try:
        rows = list(_data_lines(path))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the region file ({err}); give a readable BED or narrowPeak file")
    if not rows:
        raise InputError(f"{path}: the region file holds no regions; give a BED or narrowPeak file with one row per prediction")
    narrowpeak = all(len(fields) == NARROWPEAK_COLUMNS for _, fields in rows)
    chrom, start, end = [], [], []
    for number, fields in rows:
        if len(fields) < 3:
            raise InputError(f"{path}: line {number} has {len(fields)} column(s); a BED row needs chrom, start, end")
        try:
            s, e = int(fields[1]), int(fields[2])
            summit = int(fields[9]) if narrowpeak else None
        except ValueError:
            raise InputError(f"{path}: line {number}: start/end{'/summit' if narrowpeak else ''} are not integers; "
                             "remove header lines or prefix them with '#'")
        if s < 0 or e < s:
            raise InputError(f"{path}: line {number}: {fields[0]}:{s}-{e} is not a valid interval (need 0 <= start <= end)")
        if narrowpeak:
            if summit < 0:
                raise InputError(f"{path}: line {number}: summit offset {summit} is negative; narrowPeak windows need the summit (column 10)")
            s = s + summit - length // 2
            e = s + length
        chrom.append(fields[0])
        start.append(s)
        end.append(e)
    kind = "narrowPeak (start + summit ± L/2)" if narrowpeak else "BED (start..end)"
    return Regions(np.array(chrom, dtype=object), start, end, None, f"{path} [{kind}]")
