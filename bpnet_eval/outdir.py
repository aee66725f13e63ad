"""The report directory: checked writable before any work, and never left looking finished early.

``summary.json`` marks a finished report: it is removed when a run starts and written last
(each file through a temporary name renamed into place), so a run that fails, is interrupted or
is killed leaves no ``summary.json``.
"""

import os
import tempfile
from pathlib import Path

from .errors import InputError
from .report import SUMMARY_JSON


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def prepare_output(out) -> Path:
    """Check that ``out`` can be written (creating nothing), then remove a stale ``summary.json``."""
    out = Path(out)
    target = nearest_existing(out)
    fix = "give a writable directory with --out"
    if not target.is_dir():
        raise InputError(f"{out}: cannot write the report ({target} is not a directory); {fix}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".bpnet-eval-probe-", dir=target)
        os.close(handle)
        os.unlink(probe)
        if target == Path(os.path.abspath(out)):
            (out / SUMMARY_JSON).unlink(missing_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot write the report ({err.strerror or err} in {target}); {fix}") from None
    return out
