"""Fixtures of the deployment tests: the chart, parsed once, and test certificates."""

from __future__ import annotations

import shutil

import pytest
from deploy_helpers import CHART, Pki, make_pki
from helm_render import Chart

# The chart's probes expect this name in the server certificate by default (release
# "tempering", namespace "default"); the container health check dials 127.0.0.1.
SERVER_NAMES = ("tempering.default.svc", "localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def chart() -> Chart:
    return Chart(CHART)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"), SERVER_NAMES)
