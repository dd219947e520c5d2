from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.emulation import EMULATED, TIME_SCALE, skip_wallclock_when_emulated  # noqa: E402
from support.privacy import RAW_NEEDLES, scan_for  # noqa: E402


@pytest.fixture(autouse=True)
def no_raw_identifier_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test: nothing logged may contain a raw identifier."""
    caplog.set_level(logging.DEBUG)
    yield
    text = caplog.text.lower()
    leaked = [n for n in RAW_NEEDLES if n.lower() in text]
    assert not leaked, f"raw identifiers in the logs: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def no_raw_identifier_in_any_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The whole session: no file any test wrote (journals, WALs, logs, broker data) holds one."""
    yield
    hits = scan_for([tmp_path_factory.getbasetemp()], RAW_NEEDLES)
    assert not hits, f"raw identifiers written to disk during the test session: {hits[:10]}"


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """Collect after every test, so that an object a test leaked (an unclosed socket, a client
    of a closed event loop) is reported against that test — as an unraisable-exception error of
    its teardown — not against whichever later test the collector happens to run in.
    EDGE_GC_EACH_TEST=0 turns it off (the suite takes about the same time either way)."""
    yield
    if os.environ.get("EDGE_GC_EACH_TEST", "1") != "0":
        gc.collect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under emulation (`make test-arm64`), `wallclock` tests skip with the reason (support/emulation.py)."""
    skip_wallclock_when_emulated(items)


def pytest_report_header() -> str:
    return f"emulated: {'yes' if EMULATED else 'no'} (EDGE_EMULATED), test timeouts x{TIME_SCALE:g} (EDGE_TIME_SCALE)"
