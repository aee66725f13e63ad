"""Write a report directory from a ``ScoreResult``: the tables, a preset's files, the figures, the HTML page
and the MultiQC file, then ``summary.json`` last (its presence marks a finished report)."""

import json
from pathlib import Path
from typing import Callable, Union

from .figures import FIGURE_FILES
from .files import output_directory, unmark_finished, write_atomic
from .html import render_html
from .multiqc import MULTIQC_FILE, multiqc_content
from .tables import REGIONS_FILE, SKIPPED_FILE, SUMMARY_JSON, SUMMARY_TSV, regions_tsv, skipped_tsv, summary_json, \
    summary_tsv

HTML_FILE = "report.html"
NO_FIGURES_NOTE = ("Figures were not drawn (--no-plots, or matplotlib is not installed: "
                   "pip install 'bpnet-eval[plots]').")


def sample_name(summary: dict, directory: Path) -> str:
    """The name a run goes by in MultiQC and the HTML title: the predictions file's stem, else the directory's name."""
    path = summary.get("inputs", {}).get("predictions", {}).get("path", "")
    return Path(path).stem if path and not path.startswith("<") else Path(directory).resolve().name


def write_figures_and_pages(directory: Path, summary: dict, figures: dict) -> list:
    """Write the figures (``{name: PNG bytes}``), ``report.html`` and ``bpnet_eval_mqc.json``; figures of an
    earlier run that were not drawn now are removed. Returns the names written."""
    for name in FIGURE_FILES:
        if name not in figures:
            (directory / name).unlink(missing_ok=True)
    for name, png in figures.items():
        write_atomic(directory / name, png)
    name = sample_name(summary, directory)
    write_atomic(directory / MULTIQC_FILE, json.dumps(multiqc_content(summary, name), indent=2,
                                                      allow_nan=False) + "\n")
    write_atomic(directory / HTML_FILE, render_html(summary, figures, f"bpnet-eval report: {name}", NO_FIGURES_NOTE))
    return list(figures) + [MULTIQC_FILE, HTML_FILE]


def write_report(out_dir, result, figures: Union[dict, Callable[[], dict]] = None) -> Path:
    """Write the report of ``result`` (a ``ScoreResult``) into ``out_dir`` (created if needed); return it.

    ``figures``: ``{name: PNG bytes}``, or a callable returning them, called once the tables are written
    (figures drawn by another process meanwhile)."""
    summary = result.summary
    with output_directory(out_dir) as out:
        unmark_finished(out)
        write_atomic(out / REGIONS_FILE, regions_tsv(result.regions, result.columns))
        write_atomic(out / SUMMARY_TSV, summary_tsv(summary))
        write_atomic(out / SKIPPED_FILE, skipped_tsv(summary))
        for name, text in result.files.items():
            write_atomic(out / name, text)
        drawn = figures() if callable(figures) else (figures or {})
        write_figures_and_pages(out, summary, drawn)
        write_atomic(out / SUMMARY_JSON, summary_json(summary))
    return out
