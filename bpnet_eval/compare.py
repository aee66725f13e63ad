"""Compare ``score`` reports over the same regions, region by region.

Any number of reports (two or more): per metric and per region group, a leaderboard — each model's mean,
its paired difference from the best model with a seeded bootstrap interval (the same resampled regions for
every model, metric and group), its win and loss rates against the best, and a verdict (``best``,
``indistinguishable`` when the interval holds 0, ``worse``). Two reports also get the pairwise view B - A
with the regions that changed most.

Only per-region columns with a known better direction (``directions.py``) are compared, and only complete
reports (``summary.json`` and bpnet-eval's marker present). Nothing is written here (``report/compare_*``).
"""

import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from .columns import predicted_total_logcounts
from .directions import better_direction, count_direction
from .errors import InputError, UsageError
from .groups import GROUP_PREFIX, LABEL_SEPARATOR
from .report.files import MARKER, is_output
from .report.tables import REGIONS_FILE, SUMMARY_JSON

COORDINATES = ("chrom", "start", "end")
PEAK_COLUMN = "peak"
ALL = "all"
# The across-region count Pearson (summary.json counts.pearson), ranked like the per-region metrics.
COUNT_PEARSON = "counts_pearson"
# Bootstrap work per chunk (resamples x regions), to bound memory.
BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000
REGION_ROWS_PER_READ = 1 << 16  # lines of regions.tsv read, split and converted at a time
VERDICTS = ("best", "indistinguishable", "worse", "better", "undefined")


@dataclass
class RegionTable:
    """A report's ``regions.tsv``: the window coordinates (text), the numeric columns and the region
    groups found in it (name → boolean mask over the rows)."""

    path: Path
    coordinates: dict
    columns: dict
    groups: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.coordinates["chrom"])

    def label(self, row: int) -> str:
        return f"{self.coordinates['chrom'][row]}:{self.coordinates['start'][row]}-{self.coordinates['end'][row]}"


def is_group_column(name: str) -> bool:
    """True for a column of region-group labels: ``peak`` (0/1) or a grouping's ``group_<name>``."""
    return name == PEAK_COLUMN or name.startswith(GROUP_PREFIX)


def groups_of_column(name: str, values, path) -> dict:
    """The region groups one label column of ``regions.tsv`` defines: ``peak`` → ``peaks`` and ``nonpeaks``
    (as in ``summary.json``); a grouping's ``group_<grouping>`` (each region's labels joined by ``,``, empty
    for none; ``--groups``) → ``<grouping>=<label>`` (as in ``summary.tsv``) per label, in order of first
    appearance; a region may be in several."""
    values = np.asarray(values, dtype=str)
    if name == PEAK_COLUMN:
        odd = np.flatnonzero(~np.isin(values, ("0", "1")))
        if odd.size:
            raise InputError(f"{path}: column peak holds {str(values[odd[0]])!r} on line {odd[0] + 2}, not 0 or 1; "
                             "rerun 'bpnet-eval score'")
        return {"peaks": values == "1", "nonpeaks": values == "0"}
    grouping = name[len(GROUP_PREFIX):]
    labels = [value.split(LABEL_SEPARATOR) if value else [] for value in values.tolist()]
    found = dict.fromkeys(label for row in labels for label in row)
    return {f"{grouping}={label}": np.array([label in row for row in labels], dtype=bool) for label in found}


def read_region_table(report_dir) -> RegionTable:
    """Read ``regions.tsv`` of a report directory (one header line, tab-separated), ``REGION_ROWS_PER_READ`` lines at
    a time (each piece's fields made arrays before the next is read: 1M rows as lists of strings took ~0.8 GB)."""
    path = Path(report_dir) / REGIONS_FILE
    if not path.is_file():
        raise InputError(f"{report_dir}: no {REGIONS_FILE}; give a report directory written by 'bpnet-eval score'")
    check_complete_report(report_dir)
    with open(path) as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        missing = [name for name in COORDINATES if name not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]}; give a regions.tsv written by 'bpnet-eval score'")
        pieces, read = [[] for _ in header], 0  # each column's arrays, a piece of rows each
        while True:
            lines = list(islice(handle, REGION_ROWS_PER_READ))
            if not lines:
                break
            rows = [line.rstrip("\r\n").split("\t") for line in lines if line.strip()]
            ragged = next((k for k, row in enumerate(rows) if len(row) != len(header)), None)
            if ragged is not None:
                raise InputError(f"{path}: line {read + ragged + 2} has {len(rows[ragged])} fields for {len(header)} "
                                 "columns; the file is truncated or edited, rerun 'bpnet-eval score'")
            for column, name, values in zip(pieces, header, zip(*rows)):
                column.append(_column_piece(name, values, path))
            read += len(rows)
    whole = {name: np.concatenate(column) if column else _column_piece(name, (), path)
             for name, column in zip(header, pieces)}
    coordinates = {name: whole[name] for name in COORDINATES}
    columns, groups = {}, {}
    for name in header:
        if is_group_column(name):
            groups.update(groups_of_column(name, whole[name], path))
        elif name not in COORDINATES:
            columns[name] = whole[name]
    return RegionTable(path, coordinates, columns, groups, read_settings(report_dir))


def _column_piece(name: str, values, path) -> np.ndarray:
    """Some rows of one column of ``regions.tsv``: text for the coordinates and group labels, else float64."""
    if name in COORDINATES or is_group_column(name):
        return np.array(values, dtype=str)
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: column {name} holds a value that is not a number; rerun 'bpnet-eval score'")


def read_settings(report_dir) -> dict:
    """The ``settings`` of a report's ``summary.json`` (track names, the count target)."""
    path = Path(report_dir) / SUMMARY_JSON
    try:
        return json.loads(path.read_text()).get("settings", {})
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot be read as JSON ({err}); rerun 'bpnet-eval score'") from None


def check_complete_report(report_dir) -> None:
    """Raise unless ``report_dir`` is a finished report of ``bpnet-eval score`` or ``merge`` (its marker and
    ``summary.json`` present)."""
    directory = Path(report_dir)
    if not is_output(directory, "report"):
        raise InputError(f"{report_dir}: not a report written by bpnet-eval (no {MARKER} marker of a report); "
                         "give a report directory written by 'bpnet-eval score' or 'merge'")
    if not (directory / SUMMARY_JSON).is_file():
        raise InputError(f"{report_dir}: no {SUMMARY_JSON}, so the report is not complete (its run failed or was "
                         "stopped); rerun 'bpnet-eval score' into it, then compare")


def check_same_regions(a: RegionTable, b: RegionTable) -> None:
    """Raise unless both tables list the same windows in the same order."""
    if len(a) != len(b):
        raise InputError(f"{b.path}: {len(b)} regions but {a.path} has {len(a)}; compare reports scored over "
                         "the same regions, in the same order")
    differ = np.zeros(len(a), dtype=bool)
    for name in COORDINATES:
        differ |= a.coordinates[name] != b.coordinates[name]
    if differ.any():
        row = int(np.flatnonzero(differ)[0])
        raise InputError(f"{b.path}: region {row + 1} is {b.label(row)} but {a.path} has {a.label(row)} there "
                         f"({int(differ.sum())} of {len(a)} regions differ); compare reports scored over the "
                         "same regions, in the same order")


def shared_groups(tables) -> dict:
    """``all``, then every region group found in any of the tables (a group one report lacks applies to
    all: the regions are the same); a group two reports define with different regions is refused."""
    groups = {ALL: np.ones(len(tables[0]), dtype=bool)}
    source = {}
    for table in tables:
        for name, mask in table.groups.items():
            if name not in groups:
                groups[name], source[name] = mask, table
            elif not np.array_equal(groups[name], mask):
                row = int(np.flatnonzero(groups[name] != mask)[0])
                raise InputError(f"{table.path}: region {row + 1} ({table.label(row)}) is "
                                 f"{'in' if mask[row] else 'not in'} group {name!r}, but in {source[name].path} it "
                                 f"is {'in' if groups[name][row] else 'not in'}; score the reports with the same "
                                 "region groups")
    return groups


def model_names(reports, names=None) -> list:
    """A label per report: ``names`` (``--name``, one per report), else the report's directory name, with as
    many parent directories as it takes to tell the reports apart."""
    if names:
        if len(names) != len(reports):
            raise UsageError(f"--name given {len(names)} times for {len(reports)} reports; give one --name per "
                             "report, in the order of the reports")
        repeated = next((n for n in names if names.count(n) > 1), None)
        if repeated is not None:
            raise UsageError(f"--name {repeated} is given twice; give each report its own name")
        return list(names)
    paths = [Path(r).resolve() for r in reports]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    twice = next(r for k, r in enumerate(reports) if paths.index(paths[k]) != k)
    raise UsageError(f"{twice}: the same report is given twice; give each report once")


def win_loss_rates(difference: np.ndarray, direction: str):
    """Fractions of regions where B is better (``d < 0`` if lower is better, ``d > 0`` if higher) and worse."""
    if difference.size == 0:
        return None, None
    sign = -1.0 if direction == "lower" else 1.0
    return float(np.mean(sign * difference > 0)), float(np.mean(sign * difference < 0))


def bootstrap_means(differences: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of the defined values of ``differences`` over ``n_resamples`` resamples of the regions
    (rows drawn with replacement, the same rows for every column): ``(n,)`` → ``(R,)``, ``(n, M)`` → ``(R, M)``.

    Each resample's row counts ``w`` (a bincount of ``numpy.random.default_rng(seed)`` draws) give
    ``mean = (w @ where(defined, d, 0)) / (w @ defined)``; NaN where a resample holds no defined value.
    The draws depend only on ``n``, ``n_resamples`` and ``seed``: any columns get the same resamples.
    Columns defined on the same rows share one ``w @ defined``.
    """
    d = np.asarray(differences, dtype=np.float64)
    single = d.ndim == 1
    d = d.reshape(d.shape[0], -1)
    n, m = d.shape
    defined = np.isfinite(d)
    first_with = {}  # each distinct column of ``defined`` (as packed bytes) → the first column holding it
    mask_of = np.array([first_with.setdefault(bits.tobytes(), len(first_with))
                        for bits in np.packbits(defined, axis=0).T], dtype=np.int64)
    masks = defined[:, np.unique(mask_of, return_index=True)[1]]
    stacked = np.concatenate([np.where(defined, d, 0.0), masks.astype(np.float64)], axis=1)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, BOOTSTRAP_CHUNK_ELEMENTS // max(n, 1))
    means = np.empty((n_resamples, m))
    for first in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - first)
        rows = rng.integers(0, n, size=(size, n))
        weights = np.empty((size, n))
        for resample, drawn in enumerate(rows):  # one resample's counts at a time: n bins stay in the CPU's cache
            weights[resample] = np.bincount(drawn, minlength=n)
        sums = weights @ stacked
        with np.errstate(invalid="ignore", divide="ignore"):
            means[first:first + size] = sums[:, :m] / sums[:, m + mask_of]
    return means[:, 0] if single else means


def percentile_interval(means: np.ndarray, confidence: float):
    """The central ``confidence`` percentile interval of bootstrap means (resamples without a defined mean dropped)."""
    means = means[np.isfinite(means)]
    if means.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def compare_metric(a: np.ndarray, b: np.ndarray, direction: str, bootstrap: np.ndarray, confidence: float) -> dict:
    """Paired comparison of one metric over the regions where both reports define it; ``bootstrap`` holds
    the resampled means of ``B - A``."""
    defined = np.isfinite(a) & np.isfinite(b)
    difference = b[defined] - a[defined]
    win, loss = win_loss_rates(difference, direction)
    result = {"better": direction, "n": int(defined.sum()), "n_undefined": int((~defined).sum()),
              "mean_a": None, "mean_b": None, "mean_difference": None, "ci_low": None, "ci_high": None,
              "win_rate": win, "loss_rate": loss}
    if difference.size:
        result.update(mean_a=float(a[defined].mean()), mean_b=float(b[defined].mean()),
                      mean_difference=float(difference.mean()))
        result["ci_low"], result["ci_high"] = percentile_interval(bootstrap, confidence)
    return result


def most_changed(table: RegionTable, a: np.ndarray, b: np.ndarray, top: int) -> list:
    """The ``top`` regions with the largest ``|B - A|`` (defined in both), largest first."""
    difference = b - a
    rows = np.flatnonzero(np.isfinite(difference))
    order = rows[np.argsort(-np.abs(difference[rows]), kind="stable")][:top]
    return [{"row": int(r) + 1, "region": table.label(r), "a": float(a[r]), "b": float(b[r]),
             "difference": float(difference[r])} for r in order]


def verdict(low, high, direction: str) -> str:
    """A model against the best, from the interval of ``model - best``: ``indistinguishable`` when it holds
    0, ``worse`` when it lies on the worse side, ``better`` on the other (a percentile interval that excludes
    its own point estimate's side: rare), ``undefined`` without an interval."""
    if low is None:
        return "undefined"
    if low <= 0.0 <= high:
        return "indistinguishable"
    return "worse" if (low > 0.0) == (direction == "lower") else "better"


def rank_metric(values: np.ndarray, rows: np.ndarray, direction: str):
    """One metric over one region group: ``values`` ``(n, N)`` (a column per model), ``rows`` the group's
    regions. Over the group's regions where every model defines the metric: each model's mean, the best
    model, and each other model's per-region difference ``model - best`` (NaN outside those regions).

    Returns
    -------
    board : dict
        ``better``, ``n`` (regions used), ``n_undefined`` (group regions some model leaves undefined),
        ``means`` (per model, or None), ``best`` (index or None), ``order`` (model indices, best first; equal
        means in input order), ``win_rate``/``loss_rate`` per model against the best.
    differences : dict
        model index → ``(n,)`` differences from the best, for every model but the best.
    """
    used = rows & np.isfinite(values).all(axis=1)
    board = ranked_board(values[used].mean(axis=0) if used.any() else None, values.shape[1], direction,
                         int(used.sum()), int(rows.sum() - used.sum()))
    if board["best"] is None:
        return board, {}
    best = board["best"]
    differences = {}
    for k in range(values.shape[1]):
        if k == best:
            continue
        d = np.full(values.shape[0], np.nan)
        d[used] = values[used, k] - values[used, best]
        differences[k] = d
        board["win_rate"][k], board["loss_rate"][k] = win_loss_rates(d[used], direction)
    return board, differences


def ranked_board(statistics, n_models: int, direction: str, n: int, n_undefined: int) -> dict:
    """A board of ``rank_metric``'s form from each model's statistic (None: none defined; a non-finite one:
    that model's is undefined, ranked last): the best (first among equals), the order best first, no win
    rates yet."""
    board = {"better": direction, "n": n, "n_undefined": n_undefined, "means": [None] * n_models, "best": None,
             "order": list(range(n_models)), "win_rate": [None] * n_models, "loss_rate": [None] * n_models}
    if statistics is None or not np.any(np.isfinite(statistics)):
        return board
    defined = np.isfinite(statistics)
    sign = 1.0 if direction == "lower" else -1.0
    key = np.where(defined, sign * statistics, np.inf)
    order = [int(k) for k in np.argsort(key, kind="stable")]
    board.update(means=[float(m) if ok else None for m, ok in zip(statistics, defined)], best=order[0],
                 order=order)
    return board


def count_values(table: RegionTable):
    """``(c, y)`` of a report: the predicted log counts of each region and its count target (``ln(1 + N)``, or
    ``ln N`` as the report's ``count_target`` says; ``-inf`` at ``N = 0`` is undefined), or None when the
    report lacks the columns."""
    target = table.settings.get("metrics", {}).get("count_target", "log1p")
    try:
        predicted = predicted_total_logcounts(table.columns, table.settings.get("track_names", []), target)
        observed = table.columns["observed_counts"]
    except KeyError:
        return None
    with np.errstate(divide="ignore"):
        return predicted, (np.log1p(observed) if target == "log1p" else np.log(observed))


def shared_count_values(tables):
    """``(c, y)`` as ``(n, N)`` arrays (``count_values`` of every report), or None when a report lacks them or
    the reports were scored with different count targets (their r would not be of the same ``y``)."""
    targets = {t.settings.get("metrics", {}).get("count_target", "log1p") for t in tables}
    found = [count_values(t) for t in tables]
    if len(targets) > 1 or any(f is None for f in found):
        return None
    return tuple(np.column_stack(v) for v in zip(*found))


def pearson_of_moments(moments: np.ndarray) -> np.ndarray:
    """Pearson's r from the means of ``x, y, x², y², xy`` (last axis, in that order):
    ``(m_xy - m_x m_y) / sqrt((m_xx - m_x²)(m_yy - m_y²))``; NaN where a variance is 0."""
    mx, my, mxx, myy, mxy = np.moveaxis(moments, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (mxy - mx * my) / np.sqrt((mxx - mx * mx) * (myy - my * my))


def rank_count_pearson(predicted: np.ndarray, target: np.ndarray, rows: np.ndarray):
    """The count Pearson ``r(c, y)`` across one group's regions where every model's ``c`` and ``y`` are defined,
    per model (columns of ``predicted`` and ``target``, ``(n, N)``), ranked (higher is better).

    Returns
    -------
    board : dict
        As ``rank_metric``'s, ``means`` holding each model's r; no win rates (r is not per region).
    moments : dict
        model index → ``(n, 5)`` columns ``x, y, x², y², xy`` (``x``, ``y`` centred over the regions used, NaN
        elsewhere), whose resampled means give each resample's r (``pearson_of_moments``).
    """
    used = rows & np.isfinite(predicted).all(axis=1) & np.isfinite(target).all(axis=1)
    n_models = predicted.shape[1]
    moments = {}
    for k in range(n_models):
        x = predicted[:, k] - predicted[used, k].mean() if used.any() else predicted[:, k]
        y = target[:, k] - target[used, k].mean() if used.any() else target[:, k]
        columns = np.column_stack([x, y, x * x, y * y, x * y])
        columns[~used] = np.nan
        moments[k] = columns
    r = pearson_of_moments(np.stack([np.nanmean(moments[k], axis=0) for k in range(n_models)])) if used.any() \
        else None
    board = ranked_board(r, n_models, count_direction("pearson"), int(used.sum()), int(rows.sum() - used.sum()))
    return board, (moments if board["best"] is not None else {})


def leaderboard_entries(board: dict, names, intervals: dict, confidence: float) -> dict:
    """A metric's leaderboard for one group, as written: the models best first, each with ``rank``, ``mean``,
    ``difference`` (mean of ``model - best``), ``ci_low``/``ci_high`` (``intervals``: model index → interval),
    ``win_rate``/``loss_rate`` against the best and ``verdict``."""
    best = board["best"]
    models = []
    for rank, k in enumerate(board["order"], start=1):
        entry = {"model": names[k], "rank": None, "mean": board["means"][k],
                 "difference": None, "ci_low": None, "ci_high": None, "win_rate": board["win_rate"][k],
                 "loss_rate": board["loss_rate"][k], "verdict": "undefined"}
        if board["means"][k] is not None:
            entry["rank"] = rank
            entry["difference"] = board["means"][k] - board["means"][best]
            if k == best:
                entry.update(difference=0.0, verdict="best")
            else:
                entry["ci_low"], entry["ci_high"] = intervals[k]
                entry["verdict"] = verdict(*intervals[k], board["better"])
        models.append(entry)
    return {"better": board["better"], "n": board["n"], "n_undefined": board["n_undefined"],
            "best": names[best] if best is not None else None, "confidence": confidence, "models": models}


def leaderboards(tables, names, groups: dict, metrics, n_resamples: int, confidence: float, seed: int,
                 counts=None) -> dict:
    """``{group: {metric: leaderboard_entries(...)}}``; every interval from one bootstrap of the regions (the
    same resamples for every model, metric and group; a group's mean is taken over its regions in each).
    ``counts``: ``(c, y)`` arrays ``(n, N)`` (``count_values`` per model), ranked as ``COUNT_PEARSON`` after
    the per-region metrics; its interval is that of ``r(model) - r(best)`` over the same resamples."""
    boards, slots, columns, moment_slots = {}, [], [], []
    for metric in metrics:
        values = np.column_stack([t.columns[metric] for t in tables])
        for group, rows in groups.items():
            board, differences = rank_metric(values, rows, better_direction(metric))
            boards[group, metric] = board
            for k, d in differences.items():
                slots.append((group, metric, k))
                columns.append(d)
    if counts is not None:
        for group, rows in groups.items():
            board, moments = rank_count_pearson(*counts, rows)
            boards[group, COUNT_PEARSON] = board
            if moments:
                moment_slots.append((group, len(columns)))
                columns += [moments[k][:, j] for k in range(len(names)) for j in range(5)]
    intervals = {}
    if columns:
        means = bootstrap_means(np.column_stack(columns), n_resamples, seed)
        intervals = {slot: percentile_interval(means[:, j], confidence) for j, slot in enumerate(slots)}
        for group, first in moment_slots:
            r = pearson_of_moments(means[:, first:first + 5 * len(names)].reshape(n_resamples, len(names), 5))
            best = boards[group, COUNT_PEARSON]["best"]
            intervals.update({(group, COUNT_PEARSON, k): percentile_interval(r[:, k] - r[:, best], confidence)
                              for k in range(len(names)) if k != best})
    ranked = list(metrics) + ([COUNT_PEARSON] if counts is not None else [])
    return {group: {metric: leaderboard_entries(boards[group, metric], names,
                                                {k: intervals[group, metric, k] for k in range(len(names))
                                                 if (group, metric, k) in intervals}, confidence)
                    for metric in ranked}
            for group in groups}


def pairwise(a: RegionTable, b: RegionTable, metrics, n_resamples: int, confidence: float, seed: int,
             top: int) -> dict:
    """Two reports: per metric, ``compare_metric`` of B against A and the ``top`` most changed regions."""
    differences = np.stack([b.columns[name] - a.columns[name] for name in metrics], axis=1)
    bootstrap = bootstrap_means(differences, n_resamples, seed)
    result = {}
    for j, name in enumerate(metrics):
        result[name] = compare_metric(a.columns[name], b.columns[name], better_direction(name), bootstrap[:, j],
                                      confidence)
        result[name]["most_changed"] = most_changed(a, a.columns[name], b.columns[name], top)
    return result


def compare_reports(*reports, names=None, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                    top: int = 10) -> dict:
    """Compare two or more reports over the same regions, metric by metric and region group by group.

    Parameters
    ----------
    reports : paths
        Report directories written by ``score`` or ``merge``, over the same regions in the same order.
    names : list of str, optional
        A label per report (default: ``model_names``).
    n_resamples, confidence, seed : bootstrap resamples of the regions, interval coverage, seed.
    top : int
        Two reports: regions listed per metric as the most changed.

    Returns
    -------
    comparison : dict
        ``models`` (name, report), ``n_regions``, ``groups`` (name → regions), ``metric_names`` (compared),
        the bootstrap settings and ``leaderboard`` (``{group: {metric: ...}}``, see ``leaderboard_entries``).
        With two reports also ``report_a``, ``report_b``, ``difference`` and ``metrics``: per metric ``better``, ``n``,
        ``mean_a``, ``mean_b``, ``mean_difference`` (B - A), ``ci_low``/``ci_high``, ``win_rate``/``loss_rate``
        (fractions of regions where B is better/worse) and ``most_changed``.
    """
    if len(reports) < 2:
        raise UsageError(f"compare needs two or more reports, not {len(reports)}; give the report directories "
                         "to compare")
    if n_resamples < 1:
        raise UsageError(f"--resamples must be at least 1, not {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence must lie between 0 and 1, not {confidence}")
    labels = model_names(reports, names)
    tables = [read_region_table(r) for r in reports]
    for table in tables[1:]:
        check_same_regions(tables[0], table)
    metrics = [name for name in tables[0].columns
               if better_direction(name) and all(name in t.columns for t in tables)]
    if not metrics:
        raise InputError(f"{tables[1].path}: no metric column in common with {tables[0].path}; compare "
                         "'bpnet-eval score' reports")
    groups = shared_groups(tables)
    counts = shared_count_values(tables)
    comparison = {"models": [{"name": n, "report": str(r)} for n, r in zip(labels, reports)],
                  "n_regions": len(tables[0]), "groups": {g: int(rows.sum()) for g, rows in groups.items()},
                  "metric_names": metrics + ([COUNT_PEARSON] if counts is not None else []),
                  "n_resamples": n_resamples, "confidence": confidence, "seed": seed,
                  "leaderboard": leaderboards(tables, labels, groups, metrics, n_resamples, confidence, seed, counts)}
    if len(tables) == 2:
        comparison.update(report_a=str(reports[0]), report_b=str(reports[1]), difference="B - A",
                          metrics=pairwise(tables[0], tables[1], metrics, n_resamples, confidence, seed, top))
    return comparison


def headline_metric(metrics, requested=None) -> str:
    """The metric shown first: ``requested``, else profile MNLL, else the first of ``metrics``."""
    if requested is not None:
        if requested not in metrics:
            raise UsageError(f"--metric {requested} is not compared; choose one of {', '.join(metrics)}")
        return requested
    return "profile_mnll" if "profile_mnll" in metrics else metrics[0]
