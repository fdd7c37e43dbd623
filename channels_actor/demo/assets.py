"""The official phoenix.js client for the demo page, fetched with the npm CLI.

The demo exists to show that the unmodified Phoenix client talks to this
library, so the page must load the real ``phoenix.js`` from the npm package
``phoenix`` (1.8.x), not a copy of ours. We never commit that file and never
download it by URL ourselves: npm fetches and verifies the package tarball,
we take its browser build (``package/priv/static/phoenix.js``, an IIFE that
defines ``var Phoenix = ...`` for a plain ``<script>`` tag) and keep it in a
cache directory so later runs work offline.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

__all__ = ["NPM_SPEC", "cache_dir", "cached_phoenix_js", "phoenix_js_path"]

logger = logging.getLogger("channels_actor.demo")

NPM_SPEC = "phoenix@~1.8"
"""The npm package spec whose browser build the demo serves."""

_MEMBER = "package/priv/static/phoenix.js"
_FILENAME = "phoenix-1.8.js"
_NPM_TIMEOUT = 300.0
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where fetched assets live: ``$CHANNELS_ACTOR_CACHE`` or ``~/.cache/channels_actor``."""
    configured = os.environ.get("CHANNELS_ACTOR_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "channels_actor"


def cached_phoenix_js() -> Path | None:
    """The cached phoenix.js, or None when it has not been fetched yet."""
    path = cache_dir() / _FILENAME
    return path if path.is_file() else None


def phoenix_js_path() -> Path:
    """Return the path of phoenix.js (1.8.x), fetching it with ``npm pack`` if needed.

    Raises:
        RuntimeError: npm is not installed, or ``npm pack`` failed; the message
            says what to install or run.
    """
    with _lock:  # two first requests must not run npm twice
        found = cached_phoenix_js()
        if found is not None:
            return found
        return _fetch(cache_dir() / _FILENAME)


def _fetch(target: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        msg = (
            "The demo needs phoenix.js from the npm package 'phoenix' (1.8.x), and the npm CLI "
            "was not found on PATH. Install Node.js with npm (https://nodejs.org/, or e.g. "
            "'apt-get install npm' / 'brew install node'), then run the demo again; it runs "
            f"'npm pack {NPM_SPEC}' once and caches phoenix.js in {target.parent} "
            "(set CHANNELS_ACTOR_CACHE to use another directory)."
        )
        raise RuntimeError(msg)
    logger.info(
        "Fetching phoenix.js: running 'npm pack %s' (once; cached in %s)", NPM_SPEC, target.parent
    )
    with tempfile.TemporaryDirectory(prefix="channels_actor_npm_") as tmp:
        command = [npm, "pack", NPM_SPEC, "--ignore-scripts"]
        try:
            result = subprocess.run(  # fixed arguments, no shell
                command, cwd=tmp, capture_output=True, text=True, timeout=_NPM_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            msg = f"Running {' '.join(command[1:])!r} failed: {exc}. {_manual_hint(target)}"
            raise RuntimeError(msg) from exc
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            msg = (
                f"'npm pack {NPM_SPEC}' exited with status {result.returncode}:\n{output}\n"
                f"Check that npm can reach its registry (npm ping). {_manual_hint(target)}"
            )
            raise RuntimeError(msg)
        tarballs = sorted(Path(tmp).glob("phoenix-*.tgz"))
        if len(tarballs) != 1:
            msg = f"'npm pack {NPM_SPEC}' left no phoenix-*.tgz in {tmp}. {_manual_hint(target)}"
            raise RuntimeError(msg)
        source = _extract(tarballs[0], target)
    logger.info("Cached phoenix.js from %s at %s", source, target)
    return target


def _extract(tarball: Path, target: Path) -> str:
    """Copy the browser build out of ``tarball`` into ``target`` atomically."""
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.extractfile(_MEMBER)
        except KeyError:
            member = None
        if member is None:
            msg = f"{tarball.name} has no {_MEMBER}; is it really the npm package 'phoenix' 1.8?"
            raise RuntimeError(msg)
        data = member.read()
    if b"var Phoenix" not in data[:200]:
        msg = f"{_MEMBER} in {tarball.name} does not define the Phoenix global as expected"
        raise RuntimeError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return tarball.name.removesuffix(".tgz")


def _manual_hint(target: Path) -> str:
    return (
        f"Alternatively run 'npm pack {NPM_SPEC}' yourself, then "
        f"'tar -xzf phoenix-1.8.*.tgz {_MEMBER}' and copy that file to {target}."
    )
