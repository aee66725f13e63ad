"""Write a report directory from a ``ScoreResult``: the tables, a preset's files, the figures, the HTML page
and the MultiQC file, then ``summary.json`` last (its presence marks a finished report). The report is one
unit (``files.output_unit``): written into a private directory beside ``--out`` that then replaces ``--out``
as a whole, in one step."""

import json
from pathlib import Path
from typing import Callable, Union

from ..columns import ranked_rows
from .files import output_unit, write_file
from .html import render_html
from .multiqc import MULTIQC_FILE, multiqc_content
from .regions_file import regions_file
from .tables import GROUPS_FILE, REGIONS_FILE, SKIPPED_FILE, SUMMARY_JSON, SUMMARY_TSV, extreme_region_rows, \
    groups_tsv, skipped_tsv, summary_json, summary_tsv

HTML_FILE = "report.html"
OWN_SHARE = 0.5  # of regions.tsv's rows formatted here (the rest by a forked process) when no figures are drawn
NO_FIGURES_NOTE = ("Figures were not drawn (--no-plots, or matplotlib is not installed: "
                   "pip install 'bpnet-eval[plots]').")


def sample_name(summary: dict, directory: Path) -> str:
    """The name a run goes by in MultiQC and the HTML title: the predictions file's stem, else the directory's name."""
    path = summary.get("inputs", {}).get("predictions", {}).get("path", "")
    return Path(path).stem if path and not path.startswith("<") else Path(directory).resolve().name


BEST_WORST_SHOWN = 10  # regions listed at each end in report.html


def best_and_worst(result) -> dict:
    """The best and worst regions of ``result`` by MNLL (``columns.ranked_rows``) as table rows for report.html."""
    ranked = ranked_rows(result.columns)
    shown = min(BEST_WORST_SHOWN, ranked.size)
    if not shown:
        return {}
    return {"best": extreme_region_rows(result.regions, result.columns, ranked[:shown]),
            "worst": extreme_region_rows(result.regions, result.columns, ranked[::-1][:shown])}


def write_figures_and_pages(directory: Path, summary: dict, figures: dict, report_dir=None,
                            regions: dict = None) -> list:
    """Write the figures (``{name: PNG bytes}``), ``report.html`` and ``bpnet_eval_mqc.json`` into ``directory``
    (a fresh one: no figure of an earlier run is there). ``report_dir``: the directory the report will be
    seen as (its name titles a run of in-memory inputs; default ``directory``); ``regions``: the best and
    worst regions' tables (``best_and_worst``). Returns the names written."""
    for name, png in figures.items():
        write_file(directory / name, png)
    name = sample_name(summary, directory if report_dir is None else report_dir)
    write_file(directory / MULTIQC_FILE, json.dumps(multiqc_content(summary, name), indent=2,
                                                    allow_nan=False) + "\n")
    write_file(directory / HTML_FILE, render_html(summary, figures, f"bpnet-eval report: {name}", NO_FIGURES_NOTE,
                                                  regions))
    return list(figures) + [MULTIQC_FILE, HTML_FILE]


def write_report(out_dir, result, figures: Union[dict, Callable] = None, inputs=(), fork=None) -> Path:
    """Write the report of ``result`` (a ``ScoreResult``) as the directory ``out_dir``; return it.

    ``out_dir`` must be new, empty, or a report bpnet-eval wrote (replaced as a whole: no file of the earlier
    report survives), and must not contain ``inputs`` (paths). The report is assembled beside it and appears
    in one step; on any error ``out_dir`` is left as it was. ``figures``: ``{name: PNG bytes}``, or a callable
    called once regions.tsv is started, returning them or a callable that waits for them (drawn by another
    process while the tables are written). ``fork``: ``workers.ForkedCall``, to write regions.tsv in a forked
    process meanwhile (``regions_file.regions_file``; this process formats ``OWN_SHARE`` of its rows unless
    ``figures`` is a callable); None: every file is written by this process."""
    summary = result.summary
    drawing = callable(figures)
    with output_unit(out_dir, "report", inputs) as unit:
        with regions_file(unit / REGIONS_FILE, result.regions, result.columns, result.groupings,
                          share=0.0 if drawing else OWN_SHARE, fork=fork):
            drawn = figures() if drawing else (figures or {})
            write_file(unit / SUMMARY_TSV, summary_tsv(summary))
            write_file(unit / SKIPPED_FILE, skipped_tsv(summary))
            write_file(unit / GROUPS_FILE, groups_tsv(summary))
            for name, text in result.files.items():
                write_file(unit / name, text)
            regions = best_and_worst(result)
            drawn = drawn() if callable(drawn) else drawn
            write_figures_and_pages(unit, summary, drawn, out_dir, regions)
        write_file(unit / SUMMARY_JSON, summary_json(summary))
    return Path(out_dir)
