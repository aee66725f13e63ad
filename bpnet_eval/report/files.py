"""Output directories as units: a report (or a shard's partial report, or a comparison) is assembled in a
private directory beside ``--out`` and becomes visible in one step, replacing the whole of ``--out``.

- ``prepare_output(out, kind, inputs)``, before any work: the parent of ``out`` can be written, ``out`` is new,
  empty or an output bpnet-eval wrote of the same kind (its marker file lists every file in it), it holds
  none of the inputs, and no other run is writing it (an ``fcntl.flock`` lock on ``.<name>.bpnet-eval.lock``
  beside it, held until the run ends; the kernel drops it when the process dies). Nothing in ``out`` is
  touched, so a run that fails, is interrupted or is killed leaves ``out`` exactly as it was.
- ``output_unit(out, kind)``: yields the private directory to write into; on success the marker is added
  and the directory is swapped with ``out`` in one step (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere
  the old directory is renamed aside, then the new one into place), and the old one is removed. A reader
  sees the complete old output or the complete new one, never a mix; no file of an earlier output survives.

``summary.json`` still marks a finished report: it is part of the unit.
"""

import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

from ..errors import InputError, UsageError

MARKER = ".bpnet-eval-report"
MARKER_FORMAT = "bpnet-eval output directory"
MARKER_VERSION = 1
KINDS = {"report": "a report", "partial": "a partial report", "comparison": "a comparison"}
WHAT = {"report": "the report", "partial": "the partial report", "comparison": "the comparison"}
WRITABLE_FIX = "give a writable directory with --out"
LOCK_SUFFIX, NEW_INFIX, OLD_INFIX = ".bpnet-eval.lock", ".bpnet-eval-new-", ".bpnet-eval-old-"


def write_atomic(path: Path, text) -> None:
    """Write ``text`` (str, bytes, or an iterable of str pieces) to ``path`` through a temporary file
    renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_file(temporary, text)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_file(path: Path, text, durable: bool = True) -> None:
    """Write ``text`` (str, bytes, or an iterable of str pieces) to ``path`` and flush it to disk (for files
    in a private directory that becomes visible as a whole; not with ``durable=False``: a file copied later)."""
    pieces = [text] if isinstance(text, (str, bytes)) else text
    with open(path, "wb" if isinstance(text, bytes) else "w") as handle:
        for piece in pieces:
            handle.write(piece)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ----------------------------------------------------------------------------------------- the marker
def read_marker(directory) -> Optional[dict]:
    """The marker of an output directory bpnet-eval wrote (``format``, ``kind``, ``files``), or None."""
    try:
        marker = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT or marker.get("kind") not in KINDS:
        return None
    return marker


def marker_text(kind: str, files: Iterable[str]) -> str:
    return json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION, "kind": kind,
                       "files": sorted(files)}, indent=2) + "\n"


def is_output(directory, kind: str = "report") -> bool:
    """True when ``directory`` holds an output of ``kind`` that bpnet-eval wrote (its marker present)."""
    marker = read_marker(directory)
    return marker is not None and marker["kind"] == kind


# ------------------------------------------------------------------------------------------ the lock
class OutputClaim:
    """The right to replace one output directory: a held lock beside it (re-entrant within a process)."""

    def __init__(self, out: Path, target: Path, kind: str, fd: int, lock: Path, created: list):
        self.out, self.target, self.kind, self.fd, self.lock, self.created = out, target, kind, fd, lock, created
        self.pid, self.depth = os.getpid(), 1

    @property
    def path(self) -> Path:
        return self.out

    def release(self) -> None:
        self.depth -= 1
        if self.depth > 0 or self.fd < 0:
            return
        _HELD.pop(str(self.target), None)
        if os.getpid() == self.pid:
            try:
                self.lock.unlink()  # while still holding it: see take_lock
            except OSError:
                pass
            for directory in reversed(self.created):  # parents made for the lock, when nothing went in
                try:
                    directory.rmdir()
                except OSError:
                    break
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


_HELD = {}  # resolved --out → its OutputClaim, in this process


def _drop_claims_in_child() -> None:
    """A forked child (reader, figure painter) must not keep the lock alive after its parent dies."""
    for claim in _HELD.values():
        try:
            os.close(claim.fd)
        except OSError:
            pass
        claim.fd = -1
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_claims_in_child)


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def take_lock(out: Path, target: Path) -> int:
    """Lock ``.<name>.bpnet-eval.lock`` beside ``target`` without waiting; the descriptor. The file is removed
    (while locked) when a run ends, so after locking, the path must still name the locked file."""
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise UsageError(f"{out}: another bpnet-eval run{who} is writing this --out now; wait for it to "
                             "finish, or give another --out")
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder removed it as we locked it: lock the new one


# ------------------------------------------------------------------------------------ up-front checks
def resolved(out) -> Path:
    """``out`` absolute with symbolic links resolved (a link to a directory: the directory is replaced)."""
    return Path(os.path.realpath(os.path.abspath(out)))


def input_paths(inputs: Iterable) -> list:
    """The input files as paths (``a.bw,b.bw`` split when it is not itself a file); in-memory inputs dropped."""
    paths = []
    for item in inputs or ():
        if item is None or not isinstance(item, (str, os.PathLike)):
            continue
        text = str(item)
        parts = [text] if os.path.exists(text) or "," not in text else [p for p in text.split(",") if p]
        paths.extend(parts)
    return paths


def check_inputs_outside(out: Path, target: Path, inputs: Iterable) -> None:
    """Refuse an ``out`` that is, or contains, one of the input files or directories."""
    for path in input_paths(inputs):
        where = resolved(path)
        if where == target or target in where.parents:
            raise UsageError(f"{out}: --out is or contains the input {path}, and the output replaces --out as a whole; "
                             "give an --out that holds none of the inputs (e.g. a new directory)")


def check_replaceable(out: Path, target: Path, kind: str) -> None:
    """Refuse to replace anything but a missing or empty directory or an output of ``kind`` bpnet-eval wrote
    (every file in it listed by its marker)."""
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise InputError(f"{out}: cannot write {WHAT[kind]} ({target} is not a directory); {WRITABLE_FIX}")
    entries = sorted(os.listdir(target))
    if not entries:
        return
    marker = read_marker(target)
    if marker is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(f"{out}: --out is a directory bpnet-eval did not write (it holds {shown}), and the output "
                         "replaces --out as a whole; give a new or empty directory with --out")
    if marker["kind"] != kind:
        raise UsageError(f"{out}: --out holds {KINDS[marker['kind']]} of bpnet-eval, not {KINDS[kind]}; give "
                         "another --out")
    foreign = [name for name in entries if name != MARKER and name not in set(marker.get("files") or ())]
    if foreign:
        raise UsageError(f"{out}: --out holds {foreign[0]}, which bpnet-eval did not write, and the output replaces "
                         "--out as a whole; move that file out of it, or give another --out")


def prepare_output(out, kind: str = "report", inputs: Iterable = ()) -> OutputClaim:
    """Before any work: check that ``out`` can be replaced by an output of ``kind`` and take its lock; return
    the claim (a context manager releasing it). Nothing in ``out`` is changed; a second run into the same
    ``out`` is refused while this claim is held. Re-entrant within one process."""
    out = Path(out)
    target = resolved(out)
    held = _HELD.get(str(target))
    if held is not None and held.fd >= 0:
        held.depth += 1
        return held
    if target.parent == target:
        raise UsageError(f"{out}: --out cannot be a filesystem root; give a directory inside a writable one")
    if os.path.lexists(target) and not target.is_dir():
        raise InputError(f"{out}: cannot write {WHAT[kind]} ({target} is not a directory); {WRITABLE_FIX}")
    check_inputs_outside(out, target, inputs)
    existing = nearest_existing(target.parent)
    if not existing.is_dir():
        raise InputError(f"{out}: cannot write {WHAT[kind]} ({existing} is not a directory); {WRITABLE_FIX}")
    created = []
    fd = -1
    try:
        handle, probe = tempfile.mkstemp(prefix=".bpnet-eval-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            created.append(directory)
        fd = take_lock(out, target)
    except OSError as err:
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        where = target.parent if target.parent.exists() else existing
        raise InputError(f"{out}: cannot write {WHAT[kind]} ({err.strerror or err} in {where}: it is built "
                         f"beside --out, then swapped in); {WRITABLE_FIX}, inside a writable one") from None
    except BaseException:
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    claim = OutputClaim(out, target, kind, fd, lock_path(target), created)
    try:
        check_replaceable(out, target, kind)
        remove_leftovers(target)
    except BaseException:
        claim.release()
        raise
    _HELD[str(target)] = claim
    return claim


def remove_leftovers(target: Path) -> None:
    """Remove the private directories of earlier runs into ``target`` that were killed (the lock is held)."""
    prefixes = (f".{target.name}{NEW_INFIX}", f".{target.name}{OLD_INFIX}")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefixes):
            shutil.rmtree(target.parent / name, ignore_errors=True)


# ------------------------------------------------------------------------------------ the swap
_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def rename2(source: Path, target: Path, flags: int) -> bool:
    """``renameat2(source, target, flags)``; False where the system or the filesystem does not offer it."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(target))


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def private_name(target: Path, infix: str) -> Path:
    return target.parent / f".{target.name}{infix}{os.getpid()}-{secrets.token_hex(4)}"


def swap_into_place(staging: Path, target: Path) -> None:
    """Make ``staging`` the directory ``target`` in one step; the old ``target`` (if any) is removed after."""
    if os.path.lexists(target):
        os.chmod(staging, stat.S_IMODE(os.stat(target).st_mode))  # keep the directory's permissions
        if rename2(staging, target, _RENAME_EXCHANGE):
            old = staging  # the old output now has the private name
        else:
            old = private_name(target, OLD_INFIX)
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except OSError:
                os.rename(old, target)
                raise
    else:
        old = None
        if not rename2(staging, target, _RENAME_NOREPLACE):
            os.rename(staging, target)
    fsync_directory(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def output_unit(out, kind: str = "report", inputs: Iterable = ()):
    """Yield a private directory beside ``out`` to write an output of ``kind`` into; when the block ends
    without error it replaces ``out`` as a whole, in one step (otherwise it is removed and ``out`` is left as
    it was). Takes the lock unless this process holds it (``prepare_output``)."""
    claim = prepare_output(out, kind, inputs)
    out = Path(out)
    staging = None
    try:
        try:
            target = claim.target
            staging = private_name(target, NEW_INFIX)
            os.mkdir(staging)  # 0o777 less the umask, as a directory made by mkdir -p
            yield staging
            write_file(staging / MARKER, marker_text(kind, os.listdir(staging)))
            fsync_directory(staging)
            check_replaceable(out, target, kind)  # again: files may have been put there meanwhile
            swap_into_place(staging, target)
        except OSError as err:
            raise InputError(f"{out}: cannot write {WHAT[kind]} ({err.strerror or err}); {WRITABLE_FIX}") from None
        finally:
            if staging is not None and os.path.lexists(staging):
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        claim.release()
