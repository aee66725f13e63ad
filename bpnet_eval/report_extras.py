"""The report files beyond the tables: figures, ``report.html`` and the MultiQC custom-content file."""

import json
from pathlib import Path
from typing import Optional

from .html_report import render_html
from .losses import predicted_profile
from .multiqc import MULTIQC_FILE, multiqc_content
from .plots import FIGURE_FILES, example_rows
from .report import write_atomic

HTML_FILE = "report.html"


def sample_name(summary: dict, directory: Path) -> str:
    """The name a run goes by in MultiQC and the HTML title: the predictions file's stem, else the directory's name."""
    path = summary.get("inputs", {}).get("predictions", {}).get("path", "")
    return Path(path).stem if path and not path.startswith("<") else Path(directory).resolve().name


def region_label(regions, row: int) -> str:
    """``chrom:start-end (region i)``, or ``region i`` when the regions have no coordinates."""
    return f"region {row + 1}" if regions.chrom[row] == "." else regions.label(row)


def example_regions(result) -> Optional[dict]:
    """The regions the example panel shows (``plots.example_rows``), read again from the sources, with their
    labels and predicted profiles; None when there is nothing to show or no way to read them."""
    picks = example_rows(result.columns)
    if result.read_rows is None or not picks:
        return None
    rows = [row for _, row in picks]
    logits, logcounts, observed = result.read_rows(rows)
    return {"picks": picks, "labels": [region_label(result.regions, row) for row in rows], "observed": observed,
            "predicted": predicted_profile(logits, logcounts)}


def write_extras(directory, result, figures) -> list:
    """Write the figures (``{name: PNG bytes}``, or a callable returning them), ``report.html`` and
    ``bpnet_eval_mqc.json`` into ``directory``; return the names written."""
    directory = Path(directory)
    note = "Figures were not drawn (--no-plots, or matplotlib is not installed: pip install 'bpnet-eval[plots]')."
    figures = figures() if callable(figures) else figures
    for name in FIGURE_FILES:  # figures of an earlier run in this directory would be stale
        if name not in figures:
            (directory / name).unlink(missing_ok=True)
    for name, png in figures.items():
        write_atomic(directory / name, png)
    name = sample_name(result.summary, directory)
    write_atomic(directory / MULTIQC_FILE, json.dumps(multiqc_content(result.summary, name), indent=2,
                                                      allow_nan=False) + "\n")
    write_atomic(directory / HTML_FILE, render_html(result.summary, figures, f"bpnet-eval report: {name}", note))
    return list(figures) + [MULTIQC_FILE, HTML_FILE]
