"""Server processes for the deployment tests: on a free port, their stderr read and waited on.

A reader thread collects the process's stderr line by line; tests wait for
lines (``wait_for``) or for the exit (``wait_exit``), never sleep. ``close``
kills whatever is left of the process group and joins the reader.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gunicorn.config import KNOWN_SETTINGS

ROOT = Path(__file__).parents[2]
WAIT = 10.0

#: A line logged at error level or worse, by gunicorn, werkzeug, the app, or a raw traceback.
ERROR_LINE = re.compile(
    r"\[(ERROR|CRITICAL)\]|^(ERROR|CRITICAL) |Traceback \(most recent call last\)"
)


def executable(name: str) -> str:
    """The venv's ``name`` script (gunicorn, flask); skip or fail when it is missing."""
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}; CHANNELS_ACTOR_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)
    return found


class ServerProcess:
    """One server subprocess (its own process group) and the lines of its stderr."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="server-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def matching(self, pattern: str) -> list[re.Match[str]]:
        with self._cond:
            return [m for line in self.lines if (m := re.search(pattern, line))]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = WAIT) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in stderr, waiting for them."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.matching(pattern)) >= count or self._eof, timeout)
            found = self.matching(pattern)
        assert len(found) >= count, (
            f"{count} x {pattern!r} not seen within {timeout}s; stderr:\n{self.text()}"
        )
        return found[:count]

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def errors(self) -> list[str]:
        """Every line at error level or a traceback."""
        with self._cond:
            return [line for line in self.lines if ERROR_LINE.search(line)]

    def signal(self, sig: int) -> float:
        """Send ``sig`` to the main process; return when it was sent (monotonic)."""
        self.proc.send_signal(sig)
        return time.monotonic()

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait for the process to exit and its stderr to end; its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(WAIT)
        else:  # workers left behind by a master that died
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reader.join(WAIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


# gunicorn 27 listens on a control socket at one path per user: tests running side by side
# would fight over it
_NO_CONTROL = (
    ["--no-control-socket"]
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS)
    else []
)


class Gunicorn(ServerProcess):
    """``gunicorn tests.deploy.app:app`` on a free port of 127.0.0.1."""

    def __init__(
        self,
        *options: str,
        app: str = "tests.deploy.app:app",
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        argv = [
            executable("gunicorn"),
            "-b",
            "127.0.0.1:0",
            *_NO_CONTROL,
            "-w",
            str(workers),
            *options,
            app,
        ]
        super().__init__(argv, env)
        try:
            self.port = int(self.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[0].group(1))
            self.wait_for(r"app ready in pid=", count=workers)  # every worker has loaded the app
        except BaseException:
            self.close()
            raise

    def worker_pids(self) -> set[int]:
        return {int(m.group(1)) for m in self.matching(r"app ready in pid=(\d+)")}
