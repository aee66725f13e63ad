"""The report's summary as a MultiQC custom-content table (``bpnet_eval_mqc.json``).

MultiQC picks up any ``*_mqc.json`` holding ``id``, ``section_name``, ``plot_type``,
``headers`` and ``data: {sample: {column: value}}``; each run of ``score`` is one sample.
"""

from .. import __version__
from ..directions import better_direction, count_direction, metric_of

MULTIQC_FILE = "bpnet_eval_mqc.json"


def _header(title: str, description: str, direction) -> dict:
    scale = {"lower": "RdYlGn-rev", "higher": "RdYlGn"}.get(direction, False)
    return {"title": title, "description": description, "format": "{:,.4f}", "scale": scale}


def multiqc_content(summary: dict, sample: str) -> dict:
    """One table row for ``sample``: the region count, the median of every (joint) per-region metric and
    the across-region count metrics of ``summary``; undefined values are left out."""
    headers = {"n_regions": {"title": "regions", "description": "regions scored", "format": "{:,.0f}",
                             "scale": False}}
    row = {"n_regions": summary["n_regions"]}
    for column, stats in summary["metrics"].items():
        if metric_of(column) != column or stats.get("median") is None:
            continue
        headers[f"{column}_median"] = _header(f"{column} (median)", f"median over regions of {column}",
                                              better_direction(column))
        row[f"{column}_median"] = stats["median"]
    for name, value in summary["counts"].items():
        if value is None:
            continue
        headers[f"count_{name}"] = _header(f"count {name}", f"{name} of predicted log counts vs ln(1 + observed "
                                           "total) across regions", count_direction(name))
        row[f"count_{name}"] = value
    return {"id": "bpnet_eval", "section_name": "bpnet-eval",
            "description": f"Predictions scored against observed tracks by bpnet-eval {__version__}.",
            "plot_type": "table", "pconfig": {"id": "bpnet_eval_table", "title": "bpnet-eval summary"},
            "headers": headers, "data": {sample: row}}
