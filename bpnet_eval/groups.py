"""Region groups from an annotation file (``--groups``): which scored regions belong to which group.

A file gives one or more *groupings* (a BED file one, named after the file; a TSV one per column), each a
few *groups* (labels such as a peak class, a GC bin or a fold). Membership is a boolean matrix
``(regions, groups)``: a region may be in no group of a grouping, or in several (it then counts in each).

- BED (``chrom start end group``, extra columns ignored): a region is in group ``g`` when its centre base,
  ``start + (end - start) // 2``, lies in an interval ``[start, end)`` of ``g`` on its chromosome (names
  matched up to ``chr``/``M``/``MT`` as everywhere). A ``.`` group is no group.
- TSV with a header: ``chrom start end`` (the window exactly, as ``regions.tsv`` writes it) or ``row``
  (1-based, as in messages) keys each line; every other column is a grouping named by its header, each
  value the region's group (``.`` or empty: none). A region on several lines is in each of their groups.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .errors import InputError, UsageError
from .input_files import open_text
from .regions import Regions, chrom_key

GROUP_PREFIX = "group_"   # regions.tsv column of a grouping: group_<name>
LABEL_SEPARATOR = ","     # a region in several groups: their labels joined by this in regions.tsv
MAX_GROUPS = 100          # groups per grouping: more is a column of names, not of groups
NO_GROUP = ("", ".")      # values meaning "in no group"
BED_RULE = "window centre (start + (end - start) // 2) inside a BED interval of the group"
TSV_RULES = {"coordinates": "window (chrom, start, end) equal to a keyed line", "row": "row number (1-based)"}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Grouping:
    """One grouping of the regions: ``member[i, k]`` says whether region ``i`` is in group ``labels[k]``."""

    name: str
    labels: List[str]
    member: np.ndarray
    source: str
    rule: str

    @property
    def column_name(self) -> str:
        return GROUP_PREFIX + self.name

    def column(self) -> np.ndarray:
        """Each region's groups as text: labels in the grouping's order joined by ``,``; empty when none."""
        labels = np.asarray(self.labels, dtype=object)
        # one join per distinct membership pattern (a few), not per region
        packed = np.packbits(self.member, axis=1)
        width = max(8, -(-packed.shape[1] // 8) * 8)  # whole 8-byte words: one uint64 key up to 64 groups
        padded = np.zeros((len(packed), width), dtype=np.uint8)
        padded[:, :packed.shape[1]] = packed
        keys = padded.view(np.uint64 if width == 8 else np.dtype((np.void, width))).reshape(-1)
        _, first, which = np.unique(keys, return_index=True, return_inverse=True)
        texts = [LABEL_SEPARATOR.join(labels[self.member[row]]) for row in first]
        return np.array(texts, dtype=object)[np.asarray(which).reshape(-1)]

    def subset(self, rows) -> "Grouping":
        """The grouping of the regions at ``rows`` (a slice, an index array or a boolean mask)."""
        return Grouping(self.name, self.labels, self.member[rows], self.source, self.rule)

    def describe(self) -> dict:
        """Where the grouping comes from, its rule, and the regions in no group and in several."""
        in_groups = self.member.sum(axis=1)
        return {"source": self.source, "rule": self.rule, "n_in_no_group": int((in_groups == 0).sum()),
                "n_in_several_groups": int((in_groups > 1).sum())}


def grouping_name(text: str) -> str:
    """A grouping's name as a column suffix: characters other than letters, digits, ``_``, ``.``, ``-`` as ``_``."""
    return _NAME_UNSAFE.sub("_", text.strip()) or "_"


def _lines(path: Path):
    """``(line number, fields)`` of the non-empty lines that are not comments (``#``, ``track``, ``browser``)."""
    try:
        with open_text(path, "groups file") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if text.strip() and not text.startswith(("#", "track", "browser")):
                    yield number, text.split("\t") if "\t" in text else text.split()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the groups file ({err}); give a readable BED or TSV file")


def _integer(path, number: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}: line {number}: {what} '{text}' is not an integer; fix the line (a header "
                         "starts with chrom, start, end or row; comments with #)") from None


def _checked_label(path, number: int, label: str) -> str:
    if LABEL_SEPARATOR in label:
        raise InputError(f"{path}: line {number}: group '{label}' contains a comma; regions.tsv joins a region's "
                         "groups with commas, so rename the group")
    return label


def _add_label(labels: dict, label: str, path, where: str) -> int:
    """The index of ``label`` in ``labels`` (added when new), or an InputError past ``MAX_GROUPS``."""
    if label not in labels:
        if len(labels) == MAX_GROUPS:
            raise InputError(f"{path}: {where} holds more than {MAX_GROUPS} different groups; a group column holds "
                             "a few labels (peak class, GC bin, fold), not one name per region")
        labels[label] = len(labels)
    return labels[label]


def _regions_by_key(regions: Regions) -> dict:
    """``{chromosome key: row numbers}`` of the regions."""
    keys = np.array([chrom_key(str(c)) for c in regions.chrom], dtype=object)
    return {key: np.flatnonzero(keys == key) for key in dict.fromkeys(keys.tolist())}


def _bed_grouping(path: Path, rows: list, regions: Regions) -> Grouping:
    if not regions.has_coordinates:
        raise UsageError(f"{path}: a groups BED file is matched to the regions' coordinates, but the regions have "
                         "none; give --regions, or a groups TSV keyed by row")
    labels, intervals = {}, {}
    for number, fields in rows:
        if len(fields) < 4:
            raise InputError(f"{path}: line {number} has {len(fields)} column(s); a groups BED row needs chrom, "
                             "start, end and the group (column 4)")
        start, end = (_integer(path, number, fields[k], what) for k, what in ((1, "start"), (2, "end")))
        if start < 0 or end < start:
            raise InputError(f"{path}: line {number}: {fields[0]}:{start}-{end} is not a valid interval "
                             "(need 0 <= start <= end)")
        label = fields[3].strip()
        if label in NO_GROUP:
            continue
        k = _add_label(labels, _checked_label(path, number, label), path, "column 4")
        intervals.setdefault((chrom_key(fields[0]), k), []).append((start, end))
    member = np.zeros((len(regions), len(labels)), dtype=bool)
    centre = regions.start + (regions.end - regions.start) // 2
    by_key = _regions_by_key(regions)
    for (key, k), spans in intervals.items():
        rows_here = by_key.get(key)
        if rows_here is None:
            continue
        spans = np.array(sorted(spans), dtype=np.int64)
        reach = np.maximum.accumulate(spans[:, 1])  # furthest end among the intervals starting at or before
        at = np.searchsorted(spans[:, 0], centre[rows_here], side="right") - 1
        member[rows_here, k] = (at >= 0) & (reach[np.maximum(at, 0)] > centre[rows_here])
    name = Path(path.name[:-len(path.suffix)] if path.suffix.lower() in (".gz", ".bgz") else path.name).stem
    return Grouping(grouping_name(name), list(labels), member, f"{path} [BED]", BED_RULE)


def _tsv_groupings(path: Path, header: list, rows: list, regions: Regions) -> list:
    by_row = header[0] == "row"
    key_width = 1 if by_row else 3
    names = [grouping_name(h) for h in header[key_width:]]
    if not names:
        raise InputError(f"{path}: the header names no group column after {', '.join(header[:key_width])}; add one "
                         "column per grouping")
    if len(set(names)) < len(names):
        raise InputError(f"{path}: two group columns are both named '{next(n for n in names if names.count(n) > 1)}'; "
                         "give each column its own name")
    if not by_row and not regions.has_coordinates:
        raise UsageError(f"{path}: the groups TSV is keyed by chrom, start, end but the regions have no coordinates; "
                         "give --regions, or key the TSV by row")
    windows = {} if by_row else {(chrom_key(str(c)), int(s), int(e)): i for i, (c, s, e) in
                                 enumerate(zip(regions.chrom, regions.start, regions.end))}
    labels = [{} for _ in names]
    hits = []  # (row, grouping, group)
    unmatched = 0
    for number, fields in rows:
        if len(fields) != len(header):
            raise InputError(f"{path}: line {number} has {len(fields)} field(s) for the {len(header)} columns of "
                             "the header; give every line a value in every column (. for no group)")
        if by_row:
            row = _integer(path, number, fields[0], "row") - 1
            if not 0 <= row < len(regions):
                raise InputError(f"{path}: line {number}: row {row + 1} is not one of the {len(regions)} regions "
                                 f"(1..{len(regions)}); fix the line")
        else:
            key = (chrom_key(fields[0]), _integer(path, number, fields[1], "start"),
                   _integer(path, number, fields[2], "end"))
            row = windows.get(key)
            if row is None:
                unmatched += 1
                continue
        for g, value in enumerate(fields[key_width:]):
            value = value.strip()
            if value not in NO_GROUP:
                hits.append((row, g, _add_label(labels[g], _checked_label(path, number, value), path,
                                                f"column '{header[key_width + g]}'")))
    if rows and unmatched == len(rows):
        raise InputError(f"{path}: none of its {len(rows)} lines is the window of a scored region (chrom, start, end "
                         "as regions.tsv writes them, 0-based); key the lines by the scored windows, or by row")
    members = [np.zeros((len(regions), len(found)), dtype=bool) for found in labels]
    for row, g, k in hits:
        members[g][row, k] = True
    rule = TSV_RULES["row" if by_row else "coordinates"]
    note = f", {unmatched} line(s) not a scored window" if unmatched else ""
    return [Grouping(name, list(found), member, f"{path} [TSV column {column}{note}]", rule)
            for name, found, member, column in zip(names, labels, members, header[key_width:])]


def read_groups(path, regions: Regions) -> List[Grouping]:
    """The groupings a groups file gives for ``regions`` (see the module docstring for the formats and rules).

    Parameters
    ----------
    path : str or Path
        A BED file (group in column 4) or a TSV whose header starts with ``chrom start end`` or ``row``.
    regions : Regions
        The regions scored, in input order.

    Returns
    -------
    groupings : list of Grouping
    """
    path = Path(path)
    rows = list(_lines(path))
    if not rows:
        raise InputError(f"{path}: the groups file holds no lines; give a BED file (chrom, start, end, group) or a "
                         "TSV with a header")
    header = [h.strip() for h in rows[0][1]]
    if header[:3] == ["chrom", "start", "end"] or header[:1] == ["row"]:
        return _tsv_groupings(path, header, rows[1:], regions)
    return [_bed_grouping(path, rows, regions)]


def read_all_groups(paths: Sequence, regions: Optional[Regions], n_regions: int) -> List[Grouping]:
    """The groupings of every file in ``paths``, over ``regions`` (row numbers when None); grouping names must
    differ across files."""
    if not paths:
        return []
    regions = regions if regions is not None else Regions.row_numbers(n_regions)
    groupings = [grouping for path in paths for grouping in read_groups(path, regions)]
    names = [g.name for g in groupings]
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        raise UsageError(f"two --groups files give a grouping named '{repeated}' (a BED file's is its file name, a "
                         "TSV's its column headers); rename one")
    return groupings
