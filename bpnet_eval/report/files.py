"""Files and the report directory: each file written through a temporary name renamed into place; the
directory checked writable before any work, and never left looking finished early.

``summary.json`` marks a finished report: it is removed when a run starts and written last, so a run
that fails, is interrupted or is killed leaves no ``summary.json``.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from .tables import SUMMARY_JSON


def write_atomic(path: Path, text) -> None:
    """Write ``text`` (str, bytes, or an iterable of str pieces) to ``path`` through a temporary file
    renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pieces = [text] if isinstance(text, (str, bytes)) else text
    try:
        with open(temporary, "wb" if isinstance(text, bytes) else "w") as handle:
            for piece in pieces:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextmanager
def output_directory(out_dir, what: str = "the report"):
    """``out_dir`` as a Path, created if needed; an OSError while writing into it becomes one line."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        yield out
    except OSError as err:
        raise InputError(f"{out}: cannot write {what} ({err.strerror or err}); give a writable directory with --out")


def unmark_finished(out: Path) -> None:
    """Remove ``out/summary.json``: the report in ``out`` is no longer finished."""
    (out / SUMMARY_JSON).unlink(missing_ok=True)




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
            unmark_finished(out)
    except OSError as err:
        raise InputError(f"{out}: cannot write the report ({err.strerror or err} in {target}); {fix}") from None
    return out
