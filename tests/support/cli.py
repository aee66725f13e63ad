"""The repository, the installed ``bpnet-eval`` script and two ways of running it: ``run_cli`` spawns the
script afresh; ``ForkedCli`` runs many CLI calls with one torch import: a helper process imports the
installed ``bpnet_eval.cli`` once and forks a child per run; the child runs the entry point ``main()`` with
its own argv, stdout/stderr files and exit status, exactly as the ``bpnet-eval`` script would."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CLI = Path(sys.executable).parent / "bpnet-eval"


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run the installed ``bpnet-eval`` in a subprocess; return the CompletedProcess (text)."""
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


SERVER = r"""
import json, os, sys, traceback
import torch  # noqa: F401  (imported once, shared by every forked run)
from bpnet_eval.cli import main

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(request["cwd"])
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            os.environ.update(request["env"])
            sys.argv = ["bpnet-eval", *request["args"]]
            try:
                main()
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Result:
    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


class ForkedCli:
    """``run(*args, cwd=None, env=None)`` → an object with ``returncode``, ``stdout``, ``stderr`` (text)."""

    def __init__(self):
        self._dir = Path(tempfile.mkdtemp(prefix="bpnet-eval-forked-"))
        self._server = subprocess.Popen([str(CLI.parent / "python"), "-c", SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, *args, cwd=None, env=None):
        out, err = self._dir / "stdout", self._dir / "stderr"
        request = {"args": [str(a) for a in args], "cwd": str(cwd or self._dir), "env": dict(env or {}),
                   "stdout": str(out), "stderr": str(err)}
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        reply = json.loads(self._server.stdout.readline())
        return Result(args, reply["returncode"], out.read_text(), err.read_text())

    def close(self):
        self._server.stdin.close()
        self._server.wait(timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)
