"""``bpnet-eval merge``: the partial reports of ``score --shard 1/n .. n/n`` → the report an unsharded score writes."""

from pathlib import Path
from typing import Annotated, List

import typer

from .common import OUTPUT, Debug, JsonOutput, Plots, Quiet, run_guarded, write_and_show


def merge(
    partials: Annotated[List[Path], typer.Argument(
        help="The partial report directories of shards 1..n (score --shard i/n --out DIR).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", rich_help_panel=OUTPUT, show_default=False,
                                      help="Report directory for the merged report.")],
    quiet: Quiet = False,
    plots: Plots = None,
    json_output: JsonOutput = False,
    debug: Debug = False,
):
    """Merge the partial reports of score --shard 1/n .. n/n into the report an unsharded score writes."""

    def work():
        from ..report.figures import draw_figures, resolve_plots
        from ..report.files import prepare_output
        from ..shards import merge as merge_partials

        prepare_output(out)
        draw_plots = resolve_plots(plots)
        result = merge_partials(list(partials), examples=draw_plots)
        figures = draw_figures(result.columns, result.summary, result.examples) if draw_plots else {}
        write_and_show(out, result, figures, json_output, quiet, f"merged {len(partials)} shard(s); report written to")

    run_guarded(work, debug)
