"""Errors users see: each carries a one-line message and an exit code.

Raised where the problem is found; turned into one line on stderr and the exit
code in one place (the CLI).
"""

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3


class BpnetEvalError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line message."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UsageError(BpnetEvalError):
    """Options that do not fit together or do not fit the inputs."""

    exit_code = EXIT_USAGE


class InputError(BpnetEvalError):
    """An input file or its content is unusable as given."""

    exit_code = EXIT_BAD_INPUT
