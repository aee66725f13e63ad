"""The report a run leaves: written from a ``ScoreResult``, recomputing nothing.

- ``files``: the output directory as one unit (checked and locked before work, assembled beside --out and
  swapped in whole; ``summary.json`` still last);
- ``tables``: regions.tsv, summary.tsv, skipped.tsv, summary.json and the summary table's rows;
- ``terminal``: the rich table and the policy notes on the terminal;
- ``figures``: the PNG figures (matplotlib, optional);
- ``html``: the self-contained report.html; ``multiqc``: the MultiQC custom-content file;
- ``writer``: ``write_report``, which writes them all in order.

A new report file goes into ``writer.write_report`` (or ``write_figures_and_pages``), its text made by a
pure function in the module of its kind.
"""
