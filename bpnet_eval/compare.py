"""Compare two ``score`` reports over the same regions: per-metric paired differences (B - A),
a seeded bootstrap confidence interval of their mean, the win rate of B and the regions that
changed most.

Only per-region columns with a known better direction (``directions.py``) are compared, and only complete
reports (``summary.json`` and bpnet-eval's marker present). The comparison's directory is one unit
(``report.files.output_unit``), replaced as a whole.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from .directions import better_direction
from .errors import InputError, UsageError
from .groups import GROUP_PREFIX
from .report.files import MARKER, is_output, output_unit, write_file
from .report.tables import REGIONS_FILE, SUMMARY_JSON, display_value, format_value

COORDINATES = ("chrom", "start", "end")
NON_METRIC_FIELDS = COORDINATES + ("peak",)
COMPARE_TSV, COMPARE_JSON = "compare.tsv", "compare.json"
TSV_FIELDS = ("metric", "better", "n", "mean_a", "mean_b", "mean_difference", "ci_low", "ci_high",
              "win_rate", "loss_rate")
# Bootstrap work per chunk (resamples x regions), to bound memory.
BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


@dataclass
class RegionTable:
    """A report's ``regions.tsv``: the window coordinates (text) and the numeric columns."""

    path: Path
    coordinates: dict
    columns: dict

    def __len__(self):
        return len(self.coordinates["chrom"])

    def label(self, row: int) -> str:
        return f"{self.coordinates['chrom'][row]}:{self.coordinates['start'][row]}-{self.coordinates['end'][row]}"


def read_region_table(report_dir) -> RegionTable:
    """Read ``regions.tsv`` of a report directory (one header line, tab-separated)."""
    path = Path(report_dir) / REGIONS_FILE
    if not path.is_file():
        raise InputError(f"{report_dir}: no {REGIONS_FILE}; give a report directory written by 'bpnet-eval score'")
    check_complete_report(report_dir)
    with open(path) as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        rows = [line.rstrip("\r\n").split("\t") for line in handle if line.strip()]
    missing = [name for name in COORDINATES if name not in header]
    if missing:
        raise InputError(f"{path}: no column {missing[0]}; give a regions.tsv written by 'bpnet-eval score'")
    ragged = next((k for k, row in enumerate(rows) if len(row) != len(header)), None)
    if ragged is not None:
        raise InputError(f"{path}: line {ragged + 2} has {len(rows[ragged])} fields for {len(header)} columns; "
                         "the file is truncated or edited, rerun 'bpnet-eval score'")
    fields = list(zip(*rows)) if rows else [()] * len(header)
    coordinates = {name: np.array(fields[header.index(name)], dtype=str) for name in COORDINATES}
    columns = {}
    for k, name in enumerate(header):
        if name in NON_METRIC_FIELDS or name.startswith(GROUP_PREFIX):  # region groups: labels, not metrics
            continue
        try:
            columns[name] = np.array([float(v) for v in fields[k]], dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: column {name} holds a value that is not a number; rerun 'bpnet-eval score'")
    return RegionTable(path, coordinates, columns)


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
    """
    d = np.asarray(differences, dtype=np.float64)
    single = d.ndim == 1
    d = d.reshape(d.shape[0], -1)
    n, m = d.shape
    defined = np.isfinite(d)
    stacked = np.concatenate([np.where(defined, d, 0.0), defined.astype(np.float64)], axis=1)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, BOOTSTRAP_CHUNK_ELEMENTS // max(n, 1))
    means = np.empty((n_resamples, m))
    for first in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - first)
        rows = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(rows.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        sums = weights @ stacked
        with np.errstate(invalid="ignore", divide="ignore"):
            means[first:first + size] = sums[:, :m] / sums[:, m:]
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


def compare_reports(report_a, report_b, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                    top: int = 10) -> dict:
    """Compare report B against report A, metric by metric (differences are B - A).

    Returns
    -------
    comparison : dict
        ``metrics``: per metric ``better``, ``n``, ``mean_a``, ``mean_b``, ``mean_difference``,
        ``ci_low``/``ci_high`` (bootstrap percentile interval of the mean difference),
        ``win_rate``/``loss_rate`` (fractions of regions where B is better/worse) and
        ``most_changed`` (the ``top`` regions by ``|B - A|``).
    """
    if n_resamples < 1:
        raise UsageError(f"--resamples must be at least 1, not {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence must lie between 0 and 1, not {confidence}")
    a, b = read_region_table(report_a), read_region_table(report_b)
    check_same_regions(a, b)
    names = [name for name in a.columns if name in b.columns and better_direction(name)]
    if not names:
        raise InputError(f"{b.path}: no metric column in common with {a.path}; compare two 'bpnet-eval score' reports")
    differences = np.stack([b.columns[name] - a.columns[name] for name in names], axis=1)
    bootstrap = bootstrap_means(differences, n_resamples, seed)
    metrics = {}
    for j, name in enumerate(names):
        metrics[name] = compare_metric(a.columns[name], b.columns[name], better_direction(name), bootstrap[:, j],
                                       confidence)
        metrics[name]["most_changed"] = most_changed(a, a.columns[name], b.columns[name], top)
    return {"report_a": str(report_a), "report_b": str(report_b), "n_regions": len(a),
            "difference": "B - A", "n_resamples": n_resamples, "confidence": confidence, "seed": seed,
            "metrics": metrics}


def compare_tsv(comparison: dict) -> str:
    """One row per metric: ``metric, better, n, mean_a, mean_b, mean_difference, ci_low, ci_high, win_rate, loss_rate``."""
    lines = ["\t".join(TSV_FIELDS)]
    for name, result in comparison["metrics"].items():
        values = [name, result["better"]] + [format_value(result[f]) for f in TSV_FIELDS[2:]]
        lines.append("\t".join(values))
    return "\n".join(lines) + "\n"


def write_comparison(out_dir, comparison: dict) -> Path:
    """Write compare.tsv and compare.json as the directory ``out_dir``: new, empty or an earlier comparison
    (replaced as a whole, in one step); never one holding either report."""
    with output_unit(out_dir, "comparison", [comparison["report_a"], comparison["report_b"]]) as unit:
        write_file(unit / COMPARE_TSV, compare_tsv(comparison))
        write_file(unit / COMPARE_JSON, json.dumps(comparison, indent=2, allow_nan=False) + "\n")
    return Path(out_dir)


def short_value(value) -> str:
    """A number for the comparison table: four significant digits."""
    return "" if value is None else f"{value:.4g}"


def comparison_table(comparison: dict) -> Table:
    """The per-metric comparison as a rich table (↓: lower is better, ↑: higher is better)."""
    percent = int(round(comparison["confidence"] * 100))
    table = Table(title=f"bpnet-eval compare: B - A over {comparison['n_regions']} regions "
                        f"({comparison['n_resamples']} bootstrap resamples)")
    for name in ("metric", "mean A", "mean B", "B - A", f"{percent}% CI", "B better", "B worse"):
        table.add_column(name, justify="left" if name == "metric" else "right", no_wrap=True)
    rate = lambda v: "" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for name, r in comparison["metrics"].items():
        ci = "" if r["ci_low"] is None else f"[{short_value(r['ci_low'])}, {short_value(r['ci_high'])}]"
        arrow = "↓" if r["better"] == "lower" else "↑"
        table.add_row(f"{name} {arrow}", short_value(r["mean_a"]), short_value(r["mean_b"]),
                      short_value(r["mean_difference"]), ci, rate(r["win_rate"]), rate(r["loss_rate"]))
    return table


def changed_table(comparison: dict, metric: str) -> Table:
    """The regions whose ``metric`` changed most, as a rich table."""
    table = Table(title=f"regions whose {metric} changed most (B - A)")
    for name in ("row", "region", "A", "B", "B - A"):
        table.add_column(name, justify="left" if name == "region" else "right")
    for entry in comparison["metrics"][metric]["most_changed"]:
        table.add_row(str(entry["row"]), entry["region"], display_value(entry["a"]), display_value(entry["b"]),
                      display_value(entry["difference"]))
    return table


def headline_metric(comparison: dict, requested=None) -> str:
    """The metric whose most-changed regions are shown: ``requested``, else profile MNLL, else the first."""
    metrics = comparison["metrics"]
    if requested is not None:
        if requested not in metrics:
            raise UsageError(f"--metric {requested} is not compared; choose one of {', '.join(metrics)}")
        return requested
    return "profile_mnll" if "profile_mnll" in metrics else next(iter(metrics))
