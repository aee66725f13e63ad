"""Validation: findings, never actions.

``check_structure`` looks at shapes, region widths, chromosome names and window bounds before
anything is read, and returns the ``Findings`` and the ``ReadPlan`` the truth source then reads by
(policies decide which windows are skipped or padded); ``ValueScreen`` looks at the values of each
batch as it is read (finite predictions, finite, non-negative and integer observed counts) and the
values computed from it (none overflowed). ``check`` and
``score`` both use these (``pipeline.check_job`` and ``pipeline.run_job``), so a problem is found by
one implementation: ``check`` collects every problem, ``score`` stops at the first one before any
report is written.
"""

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np

from .environment import memory_limit_bytes
from .errors import EXIT_BAD_INPUT, EXIT_USAGE, InputError, UsageError
from .options import Policies
from .regions import NO_REGIONS, Regions, factorize, match_chromosomes, region_label, region_text
from .sources.base import PredictionSource, ReadPlan, TruthSource

# Float64 copies of one batch alive at once while it is read and scored (logits, observed, softmax, ...).
BATCH_COPIES = 8
# Bytes kept per region until the report is written (columns, coordinates, bookkeeping).
BYTES_PER_REGION = 512


@dataclass
class Problem:
    """One thing wrong with the inputs: a one-line message and the exit code it earns."""

    message: str
    exit_code: int = EXIT_BAD_INPUT

    def error(self):
        return (UsageError if self.exit_code == EXIT_USAGE else InputError)(self.message)


@dataclass
class Findings:
    """Everything validation learnt: what was detected, problems, warnings and per-row decisions."""

    detected: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)      # row → reason (not scored)
    padded: dict = field(default_factory=dict)       # row → reason (scored, zeros past the end)
    chrom_names: dict = field(default_factory=dict)  # truth file → {region name: name in the file}

    def add(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        self.problems.append(Problem(" ".join(message.split()), exit_code))

    def raise_first(self) -> None:
        """Raise the first problem as an error, saying how many more there are."""
        if not self.problems:
            return
        first = self.problems[0]
        more = len(self.problems) - 1
        suffix = f" ({more} more problem(s): run bpnet-eval check for the list)" if more else ""
        raise Problem(first.message + suffix, first.exit_code).error()

    def warn_non_integer(self, regions: int) -> None:
        """The warning for ``regions`` scored regions with non-integer observed values (none for 0)."""
        if regions:
            self.warnings.append(
                f"{regions} scored region(s) have non-integer observed values; MNLL assumes counts, so a "
                "normalised track (CPM, fold change) gives MNLL values that are not comparable to counts")

    def skip_mask(self, n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[list(self.skipped)] = True
        return mask

    def report(self, regions: Optional[Regions]) -> dict:
        """The policy outcome for summary.json: skipped and padded rows (1-based), names mapped, warnings."""
        def rows(decisions):
            return [{"row": int(i) + 1, "region": region_text(regions, i), "reason": reason}
                    for i, reason in sorted(decisions.items())]

        return {"n_skipped": len(self.skipped), "skipped": rows(self.skipped), "padded": rows(self.padded),
                "chromosome_names_mapped": self.chrom_names, "warnings": list(self.warnings)}


def check_bigwig_windows(findings: Findings, regions, chrom_sizes: dict, path: str, off_end: str,
                         codes: tuple) -> np.ndarray:
    """Check one bigWig against the regions; return each row's chromosome name in that file.

    Unknown chromosomes are problems; windows past an end are problems, skipped or padded by ``off_end``.
    ``codes``: ``regions.factorize(regions.chrom)``, made once for every map of the rows' chromosomes.
    """
    codes, distinct = codes
    mapping, missing = match_chromosomes(distinct, chrom_sizes)
    renamed = {k: v for k, v in mapping.items() if k != v}
    if renamed:
        findings.chrom_names[path] = renamed
    if missing:
        first = int(np.flatnonzero(np.isin(codes, [distinct.index(name) for name in missing]))[0])
        findings.add(f"{path}: chromosome '{regions.chrom[first]}' of {regions.label(first)} is not in this bigWig "
                     f"({len(missing)} region chromosome(s) missing: {', '.join(missing[:5])}; the bigWig has "
                     f"{', '.join(list(chrom_sizes)[:5])}{', ...' if len(chrom_sizes) > 5 else ''}); use regions "
                     "and bigWigs of the same genome build, or drop those regions")
    distinct = [mapping.get(c, c) for c in distinct]
    names = np.array(distinct, dtype=object)[codes]
    sizes = np.array([chrom_sizes.get(c, np.iinfo(np.int64).max) for c in distinct], dtype=np.int64)[codes]
    outside = np.flatnonzero((regions.start < 0) | (regions.end > sizes))
    if len(outside) and off_end == "error":
        i = int(outside[0])
        findings.add(f"{path}: {regions.label(i)} runs off {names[i]} (length {sizes[i]}); {len(outside)} window(s) "
                     "lie past a chromosome end; drop them, or score with --off-end skip (listed in the report) "
                     "or --off-end pad (zeros past the end)")
    if off_end != "error":
        decisions = findings.skipped if off_end == "skip" else findings.padded
        for i in outside.tolist():
            decisions.setdefault(i, f"window runs off {names[i]} (length {sizes[i]}) in {path}")
    return names


# ----------------------------------------------------------------------- structure
def check_sizes(findings: Findings, source, what: str, batch_size: int, limit: Optional[int] = None) -> None:
    """Problems when a source's claimed shape cannot fit in memory: per batch, or for all regions."""
    limit = memory_limit_bytes() if limit is None else limit
    n, tracks, length = int(source.n), int(source.n_tracks), int(source.length)
    batch = min(batch_size, n) * tracks * length * 8 * BATCH_COPIES
    if batch > limit // 2:
        findings.add(f"{what}: a batch of {min(batch_size, n)} regions × {tracks} track(s) × L = {length} needs "
                     f"about {batch / 2**30:.1f} GiB but {limit / 2**30:.1f} GiB are available; check the file "
                     "(a damaged file can claim any shape) or give a smaller --batch-size")
    if n * BYTES_PER_REGION > limit // 2:
        findings.add(f"{what}: claims N = {n} regions, more than {limit / 2**30:.1f} GiB of memory can score; "
                     "check the file (a damaged file can claim any shape) or split it")
    for dataset in source.stored_datasets():
        if dataset.size and dataset.id.get_storage_size() == 0:
            findings.add(f"{what}: '{dataset.name}' claims shape {dataset.shape} but stores no data; "
                         "re-create the file (it was never written or is damaged)")


def describe_regions(regions: Optional[Regions], codes: Optional[tuple]) -> dict:
    """Chromosomes and window widths, for ``check`` (``codes``: ``regions.factorize(regions.chrom)``)."""
    if regions is None:
        return {"source": NO_REGIONS}
    codes, distinct = codes
    counts = np.bincount(codes, minlength=len(distinct))
    widths, wcounts = np.unique(regions.end - regions.start, return_counts=True)
    return {"source": regions.source, "n_regions": len(regions),
            "chromosomes": {str(c): int(counts[k]) for c, k in sorted((str(c), k) for k, c in enumerate(distinct))},
            "widths": {str(int(w)): int(k) for w, k in zip(widths, wcounts)}}


def check_structure(preds: PredictionSource, truth: TruthSource, regions: Optional[Regions], policies: Policies,
                    batch_size: int = 1024, memory_limit: Optional[int] = None) -> Tuple[Findings, ReadPlan]:
    """Every problem visible without reading values (track count, N, L, region widths, chromosomes, sizes),
    and the plan the truth source reads by (chromosome names matched, rows skipped or padded)."""
    findings = Findings()
    codes = None if regions is None else factorize(regions.chrom)  # once for every per-row chromosome map
    findings.detected = {"predictions": preds.describe(), "truth": truth.describe(),
                         "regions": describe_regions(regions, codes)}
    for source in ("predictions", "truth"):  # how a source read its files, where it departs from the plain reading
        findings.warnings += findings.detected[source].get("notes", [])
    truth_label = ", ".join(truth.paths) or "observed counts"
    check_sizes(findings, preds, str(preds.path), batch_size, memory_limit)  # first: the rest may follow from it
    if truth.n_tracks != preds.n_tracks:
        findings.add(f"{truth_label}: {truth.n_tracks} observed track(s) for {preds.n_tracks} predicted track(s) in "
                     f"{preds.path}; give one bigWig per predicted track, in track order (stranded: plus, then "
                     "minus)", EXIT_USAGE)
    if truth.n is not None and truth.n != preds.n:
        findings.add(f"{truth_label}: {truth.n} observed regions but {preds.path} holds {preds.n} predictions; the "
                     "observed counts must be in prediction order, one row per prediction")
    if truth.length is not None and truth.length != preds.length:
        findings.add(f"{truth_label}: observed profiles have L = {truth.length} but the predictions have "
                     f"L = {preds.length}; score observed and predicted windows of the same width")
    if truth.n is not None and truth.n_tracks == preds.n_tracks and truth.length == preds.length:
        check_sizes(findings, truth, truth_label, batch_size, memory_limit)
    plan = ReadPlan()
    if regions is None:
        return findings, plan
    what = regions.source or "regions"
    if len(regions) != preds.n:
        findings.add(f"{what}: {len(regions)} regions for {preds.n} predictions in {preds.path}; give one region per "
                     "prediction, in prediction order")
        return findings, plan
    widths = regions.end - regions.start
    wrong = np.flatnonzero(widths != preds.length)
    if len(wrong):
        i = int(wrong[0])
        findings.add(f"{what}: {regions.label(i)} is {widths[i]} bp wide but the predictions have L = "
                     f"{preds.length} positions ({len(wrong)} region(s) differ); give regions of width "
                     f"{preds.length} (or a narrowPeak file, whose windows are summit ± L/2)")
        return findings, plan
    chrom_sizes = truth.chrom_sizes()
    if chrom_sizes is not None:
        names = [check_bigwig_windows(findings, regions, sizes, path, policies.off_end, codes)
                 for path, sizes in zip(truth.paths, chrom_sizes)]
        plan = ReadPlan(tuple(names), frozenset(findings.skipped), frozenset(findings.padded))
    elif (regions.start < 0).any():
        i = int(np.flatnonzero(regions.start < 0)[0])
        findings.add(f"{what}: {regions.label(i)} starts before position 0; fix the coordinates")
    return findings, plan


# -------------------------------------------------------------------------- values
# Input values beyond this magnitude (finite) are far outside any model's or assay's range. Below it no column
# of the default scoring options (float64 or float32, unsmoothed) can overflow: ``check`` computes only the
# batches holding such a value, as ``score`` would, to find the overflows ``score`` stops on.
EXTREME = 1e8


def _value_text(values: np.ndarray) -> str:
    """The first non-finite value of ``values`` as written in messages: NaN, inf or -inf."""
    value = float(values[~np.isfinite(values)].flat[0])
    return "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")


class ValueScreen:
    """Checks each batch as it is read: finite predictions, finite and non-negative (and integer) observed
    counts; and each batch's computed columns (``screen_columns``): no value overflowed.

    ``screen`` and ``screen_columns`` return the rows of the batch that are not scored; with
    ``collect=False`` the first batch with a problem raises it (before any report is written). A non-finite
    value anywhere (predicted logits or log counts, an observed value stored in HDF5, arrays or a bigWig;
    an uncovered bigWig base is 0, not NaN) and a computed value that overflowed from finite inputs all
    follow ``--nonfinite``: an error naming the file and the region, or the region skipped and listed.
    """

    def __init__(self, findings: Findings, preds, truth, regions, policies: Policies, collect: bool = False):
        self.findings, self.regions, self.policies, self.collect = findings, regions, policies, collect
        self.preds_path = str(preds.path)
        paths = list(truth.paths)
        self.truth_paths = paths if len(paths) == truth.n_tracks else [paths[0] if paths else "observed counts"] * truth.n_tracks
        self.tally = {}  # kind → [regions, first row, detail]
        self.non_integer = 0
        self._lock = threading.Lock()  # ``screen`` runs in the reading thread, ``screen_columns`` in the computing one

    def _note(self, kind: str, rows: np.ndarray, detail: str) -> None:
        entry = self.tally.setdefault(kind, [0, int(rows[0]), detail])
        entry[0] += len(rows)

    def _decide(self, i: int, rows: np.ndarray, kind: str, reason: str, detail: str) -> None:
        """Rows ``i + rows`` with a non-finite value: skipped (``--nonfinite skip``) or noted as a problem."""
        if self.policies.nonfinite == "skip":
            for k in rows.tolist():
                self.findings.skipped.setdefault(i + k, reason)
        else:
            self._note(kind, i + rows, detail)

    def screen(self, i: int, logits: np.ndarray, logcounts: np.ndarray, observed: np.ndarray,
               finite_logits: Optional[np.ndarray] = None, nonzero_observed: Optional[np.ndarray] = None,
               non_integer_regions: Optional[Callable[[], np.ndarray]] = None) -> np.ndarray:
        """Rows (within the batch) not to score: already skipped, or non-finite under ``--nonfinite skip``.
        ``finite_logits``: whether each row's logits are all finite, when already known (else checked here);
        ``nonzero_observed``: every value of ``observed`` that is not 0 (in any order), when already gathered: the
        whole batch is checked from them (0 is finite, non-negative and an integer), its rows only where one fails;
        ``non_integer_regions()``: which rows hold a count that is not an integer, where that is known more cheaply
        than from the whole batch (``seed.CountTerms.non_integer_regions``)."""
        with self._lock:
            skip, unread, fractional = self._screen(i, logits, logcounts, observed, finite_logits, nonzero_observed)
        if fractional:  # the regions holding a non-integer count, counted outside the lock (a pass over the whole
            # batch, which the computation's ``screen_columns`` need not wait for)
            with np.errstate(invalid="ignore"):
                rows = (non_integer_regions() if non_integer_regions is not None else
                        (observed != np.rint(observed)).any(axis=(1, 2))) & ~unread
            with self._lock:
                self.non_integer += int(rows.sum())
        return skip

    def _screen(self, i, logits, logcounts, observed, finite_logits=None, nonzero_observed=None):
        """``screen`` under the lock: ``(skip, unread, fractional)``, ``unread`` the rows whose values are not checked
        further, ``fractional`` whether some value of the batch is not an integer (its regions counted by ``screen``)."""
        skipped, n = self.findings.skipped, len(logits)
        skip = np.fromiter((i + k in skipped for k in range(n)), bool, n) if skipped else np.zeros(n, bool)
        if finite_logits is None:
            finite_logits = np.isfinite(logits).all(axis=(1, 2))
        bad_logits = ~finite_logits & ~skip
        bad_counts = ~np.isfinite(logcounts).all(axis=1) & ~skip
        for kind, bad in (("logits", bad_logits), ("log counts", bad_counts)):
            rows = np.flatnonzero(bad)
            if not len(rows):
                continue
            sample = (logits if kind == "logits" else logcounts)[rows[0]]
            self._decide(i, rows, f"nonfinite {kind}", f"non-finite predicted {kind}",
                         "NaN" if np.isnan(sample).any() else "inf")
        # observed: one cheap pass each for the smallest and largest value (NaN propagates into both), over the
        # nonzero values where they are given; rows only when there is a problem
        values = observed if nonzero_observed is None else nonzero_observed
        low = values.min() if values.size else 0.0
        high = values.max() if values.size else 0.0
        bad_observed = np.zeros(n, bool)
        if not (np.isfinite(low) and np.isfinite(high)):
            for s in range(observed.shape[1]):
                bad = ~np.isfinite(observed[:, s]).all(axis=1) & ~skip
                rows = np.flatnonzero(bad)
                if len(rows):
                    self._decide(i, rows, f"nonfinite observed {s}",
                                 f"non-finite observed value in {self.truth_paths[s]}",
                                 _value_text(observed[rows[0], s]))
                bad_observed |= bad
        if self.policies.nonfinite == "skip":
            skip |= bad_logits | bad_counts | bad_observed
        unread = skip | bad_observed  # values of these rows are not checked further
        if low < 0 or (np.isnan(low) and (observed < 0).any()):
            for s in range(observed.shape[1]):
                rows = np.flatnonzero((observed[:, s] < 0).any(axis=1) & ~unread)
                if len(rows):
                    self._note(f"negative {s}", i + rows, f"{float(observed[rows[0], s].min()):g}")
        with np.errstate(invalid="ignore"):
            fractional = bool((np.rint(values) != values).any())  # likewise: rows only for a non-integer track
        if not self.collect:
            self._problems()
            self.findings.raise_first()
        return skip, unread, fractional

    def extreme_rows(self, logits: np.ndarray, logcounts: np.ndarray, observed: np.ndarray, skip: np.ndarray):
        """``(extreme, unscreened)`` rows of a batch: ``extreme``, rows (scored, every value finite) holding a value
        beyond ``EXTREME`` in magnitude, the only ones whose computed columns can overflow (``check`` computes
        the batches holding them, as ``score`` would); ``unscreened``, rows whose columns are not screened
        (``skip``, or a non-finite value: already a problem)."""
        finite, beyond = ~skip, np.zeros(len(skip), bool)
        for values in (logits, logcounts, observed):
            values = values.reshape(len(values), -1)
            if values.size:
                high, low = values.max(axis=1), values.min(axis=1)
                finite &= np.isfinite(high) & np.isfinite(low)
                beyond |= (np.abs(high) > EXTREME) | (np.abs(low) > EXTREME)
        return beyond & finite, ~finite

    def screen_columns(self, i: int, columns: dict, always_defined, skip: np.ndarray,
                       dtype: str = "float64") -> np.ndarray:
        """Rows (within the batch) whose computed values overflowed, from finite inputs: ±inf in any column, or
        NaN in a column ``always_defined`` (the seed losses, counts and log counts; other metrics are NaN where
        undefined). ``skip``: rows not scored already. Under ``--nonfinite skip`` they are skipped and listed;
        else the first one raises (``collect=False``) or is noted."""
        with self._lock:
            extra = np.zeros(len(skip), bool)
            for name, values in columns.items():
                values = np.asarray(values)
                bad = (np.isinf(values) | (np.isnan(values) if name in always_defined else False)) & ~skip & ~extra
                rows = np.flatnonzero(bad)
                if not len(rows):
                    continue
                detail = f"{name} = {_value_text(values[rows[:1]])}"
                self._decide(i, rows, f"overflow {dtype}", f"{detail}: a computed value overflowed {dtype}", detail)
                extra |= bad
            if self.policies.nonfinite != "skip":
                extra[:] = False
            if not self.collect:
                self._problems()
                self.findings.raise_first()
            return extra

    def _problems(self) -> None:
        for kind, (count, row, detail) in self.tally.items():
            label = region_label(self.regions, row)
            if kind.startswith("nonfinite observed"):
                path = self.truth_paths[int(kind.split()[2])]
                self.findings.add(f"{path}: observed value {detail} in {label} is not finite ({count} region(s) so "
                                  "far); observed tracks must hold finite counts (an uncovered bigWig base reads as "
                                  "0; a stored value beyond ±3.4e38 as inf); fix the file, or skip those regions "
                                  "with --nonfinite skip (listed in the report)")
            elif kind.startswith("nonfinite"):
                what = kind.split(" ", 1)[1]
                self.findings.add(f"{self.preds_path}: predicted {what} of {label} are not finite ({detail}); "
                                  f"{count} region(s) so far; fix the model output, or skip those regions with "
                                  "--nonfinite skip (listed in the report)")
            elif kind.startswith("overflow"):
                dtype = kind.split()[1]
                self.findings.add(f"{self.preds_path}: {detail} in {label}: the inputs are finite but the value "
                                  f"overflows {dtype} ({count} region(s) so far); the logits, log counts or observed "
                                  "values are far outside any model's or assay's range: fix the inputs, or skip those "
                                  "regions with --nonfinite skip (listed in the report)")
            else:
                path = self.truth_paths[int(kind.split()[1])]
                self.findings.add(f"{path}: observed value {detail} in {label} is negative ({count} region(s) so "
                                  "far); observed tracks must be counts ≥ 0 (a bigWig whose values are all ≤ 0, a "
                                  "minus strand stored as negative values, is read as magnitudes; a track that mixes "
                                  "signs is not counts: not log-ratios or signal differences); give each strand's "
                                  "counts, one file per strand")
        self.tally = {}

    def finish(self) -> None:
        """Turn what was collected into problems, and warn about non-integer observed values."""
        with self._lock:
            self._problems()
        self.findings.warn_non_integer(self.non_integer)


def format_findings(findings: Findings) -> str:
    """What ``check`` prints: what was detected, policy outcomes, warnings, then every problem."""
    detected, lines = findings.detected, []
    preds = detected.get("predictions")
    if preds:
        lines.append(f"predictions: {preds['path']}: layout {preds['layout']}; N = {preds['n_regions']}, "
                     f"S = {preds['n_tracks']}, L = {preds['length']}; log counts per {preds['logcounts_per']}")
    truth = detected.get("truth")
    if truth:
        lines.append(f"truth: {truth['kind']}: {', '.join(truth.get('paths', []))}"
                     + (f" [{truth['dataset']}]" if truth.get("dataset") else ""))
    regions = detected.get("regions")
    if regions:
        lines.append(f"regions: {regions['source']}")
        if "chromosomes" in regions:
            chroms = regions["chromosomes"]
            shown = ", ".join(f"{c} ({k})" for c, k in list(chroms.items())[:10])
            lines.append(f"  {regions['n_regions']} regions on {len(chroms)} chromosome(s): {shown}"
                         + (", ..." if len(chroms) > 10 else ""))
            lines.append("  widths: " + ", ".join(f"{w} bp ({k})" for w, k in regions["widths"].items()))
    for name, grouping in detected.get("groups", {}).items():
        counts = ", ".join(f"{label} ({k})" for label, k in list(grouping["groups"].items())[:10])
        lines.append(f"groups {name}: {grouping['source']}: {len(grouping['groups'])} group(s): {counts}"
                     + (", ..." if len(grouping["groups"]) > 10 else "")
                     + f"; {grouping['n_in_no_group']} region(s) in no group, "
                     f"{grouping['n_in_several_groups']} in several")
    if "values" in detected:
        lines.append(f"values: {detected['values']}")
    for path, renamed in findings.chrom_names.items():
        lines.append(f"chromosome names matched in {path}: "
                     + ", ".join(f"{a} -> {b}" for a, b in renamed.items()))
    for key, decisions in (("skipped", findings.skipped), ("padded", findings.padded)):
        if decisions:
            lines.append(f"{key}: {len(decisions)} region(s)")
    lines += [f"warning: {w}" for w in findings.warnings]
    if findings.problems:
        lines.append(f"problems: {len(findings.problems)}")
        lines += [f"  - {p.message}" for p in findings.problems]
    else:
        lines.append("problems: none")
    return "\n".join(lines) + "\n"
