"""Assertions and readers shared by the end-to-end tests."""

import csv

import numpy as np


def assert_one_line_error(result, code, *fragments):
    """Exit ``code``, exactly one line on stderr naming every fragment, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bpnet-eval: error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def read_columns(path) -> dict:
    """A TSV with a header as ``{column: [text values]}``."""
    with open(path) as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return {name: [row[k] for row in rows[1:]] for k, name in enumerate(rows[0])}


def numbers(table: dict, name: str) -> np.ndarray:
    """One column of ``read_columns`` as float64."""
    return np.array(table[name], dtype=np.float64)
