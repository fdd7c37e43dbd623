"""Print how many inputs each fuzz target was fed in this run."""

from __future__ import annotations

import pytest

from tests.fuzz import FED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FED:
        return
    terminalreporter.section("fuzz inputs fed")
    for target, fed in sorted(FED.items()):
        terminalreporter.write_line(f"{target:<56} {fed:>10,}")
    terminalreporter.write_line(f"{'total':<56} {sum(FED.values()):>10,}")
