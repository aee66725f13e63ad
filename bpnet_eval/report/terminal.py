"""What the terminal shows of a report: the summary table and the policy outcomes."""

from rich.console import Console
from rich.table import Table

from .tables import summary_table_rows, summary_title


def summary_table(summary: dict) -> Table:
    """The summary as a rich table (rows from ``summary_table_rows``)."""
    header, rows = summary_table_rows(summary)
    table = Table(title=summary_title(summary))
    for k, name in enumerate(header):
        table.add_column(name, no_wrap=k == 0, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(summary: dict, console: Console) -> None:
    """Print the summary table; on a pipe or a file, as wide as it needs so that no number is cut."""
    table = summary_table(summary)
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(file=console.file, width=max(needed, 80), color_system=None)
    console.print(table)



def print_outcome(summary: dict, stderr: Console) -> None:
    """Policy outcomes on ``stderr``: warnings, renamed chromosomes, skipped and padded regions."""
    for warning in summary.get("warnings", []):
        stderr.print(f"bpnet-eval: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for path, renamed in summary.get("chromosome_names_mapped", {}).items():
        pairs = ", ".join(f"{a} → {b}" for a, b in list(renamed.items())[:5]) + (", ..." if len(renamed) > 5 else "")
        stderr.print(f"bpnet-eval: note: chromosome names matched to {path}: {pairs}", markup=False, highlight=False,
                     soft_wrap=True)
    for key, what in (("skipped", "not scored (see skipped.tsv)"), ("padded", "padded with zeros past a chromosome end")):
        if summary.get(key):
            stderr.print(f"bpnet-eval: note: {len(summary[key])} region(s) {what}", highlight=False)
