"""Fixtures shared by the test modules; the helpers they use live in ``tests.support``."""

import pytest

from tests.support.cases import make_case
from tests.support.cli import ForkedCli


@pytest.fixture(scope="module")
def forked():
    """The installed CLI's entry point, run in a child forked per call from one process that imported
    it once (one torch import per module); ``run_cli`` spawns the installed script afresh."""
    server = ForkedCli()
    yield server.run
    server.close()


@pytest.fixture
def case(tmp_path):
    return make_case(tmp_path)
