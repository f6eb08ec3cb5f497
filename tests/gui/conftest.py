"""The desktop console's tests: Qt offscreen, against the mutual-TLS stand-in for the proxy.

The stand-in (a CA, admin identities, a contract-shaped TLS server) comes
from tests/console_proxy/console_fixtures.py.
"""

# ruff: noqa: F401

from __future__ import annotations

import os

# Before pytest-qt makes the QApplication: no display is needed, here or in CI.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.console_proxy.console_fixtures import (
    fake_api,
    pki,
    proxy,
    proxy_factory,
)
from tests.gui.harness import gui
