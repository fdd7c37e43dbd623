"""The fuzz suite's long form: ``python -m tests.fuzz [--examples N] [--seed S]``.

Runs every test in tests/fuzz with ``N`` examples per hypothesis test (scaled
per target; see ``fuzz_settings``) and a fresh seed, printed so that a failure
can be replayed with ``--seed``. Then, when atheris is installed, each atheris
target runs for ``--atheris-runs`` inputs from a corpus of valid frames and
heads. Exits non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from tests.fuzz.test_http_fuzz import UPGRADE
from tests.fuzz.test_serializers_fuzz import _SEEDS_BINARY, _SEEDS_TEXT

_ROOT = Path(__file__).resolve().parents[2]
_CORPUS: dict[str, list[bytes]] = {
    "v2_text": [seed.encode() for seed in _SEEDS_TEXT],
    "v1_text": [seed.encode() for seed in _SEEDS_TEXT],
    "v2_binary": list(_SEEDS_BINARY),
    "parse_head": [UPGRADE, b"GET / HTTP/1.0\r\n\r\n"],
    "protocol": [bytes(range(64)), bytes(64)],
}


def _run(command: list[str], env: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    code = subprocess.call(command, cwd=_ROOT, env=env)
    return code, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument(
        "--examples",
        type=int,
        default=100_000,
        help="examples per hypothesis test (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="replay a run's seed")
    parser.add_argument(
        "--atheris-runs",
        type=int,
        default=1_000_000,
        help="inputs per atheris target, 0 to skip (default %(default)s)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (e.g. -k http)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzz long form: --examples {args.examples} --seed {seed}", flush=True)
    env = {
        **os.environ,
        "CHANNELS_ACTOR_FUZZ_EXAMPLES": str(args.examples),
        "CHANNELS_ACTOR_FUZZ_SEED": str(seed),
    }
    # --timeout=0: the suite's per-test limit is for the short form.
    command = [sys.executable, "-m", "pytest", "-q", "--timeout=0", "--durations=20",
               f"--hypothesis-seed={seed}",
               "tests/fuzz", *args.pytest_args]  # fmt: skip
    failed, seconds = _run(command, env)
    print(f"hypothesis and mutation loops: {'FAILED' if failed else 'ok'} in {seconds:.1f}s")
    if args.atheris_runs and find_spec("atheris") is None:
        print("atheris is not installed (pip install atheris): its targets are skipped")
    elif args.atheris_runs:
        from tests.fuzz.atheris_targets import TARGETS

        with tempfile.TemporaryDirectory(prefix="channels-actor-fuzz-") as scratch:
            for name in TARGETS:
                corpus = Path(scratch, name)
                corpus.mkdir()
                for number, data in enumerate(_CORPUS[name]):
                    corpus.joinpath(f"seed-{number}").write_bytes(data)
                artifacts = Path(scratch, f"{name}-crash-")
                code, seconds = _run(
                    [sys.executable, "-m", "tests.fuzz.atheris_targets", name,
                     f"-runs={args.atheris_runs}", f"-seed={seed % 2**31 or 1}",
                     f"-artifact_prefix={artifacts}", "-print_final_stats=0", str(corpus)],
                    env,
                )  # fmt: skip
                status = "ok" if code == 0 else f"FAILED (exit {code})"
                print(f"atheris {name}: {args.atheris_runs:,} inputs, {status} in {seconds:.1f}s")
                if code:
                    for crash in Path(scratch).glob(f"{name}-crash-*"):
                        print(f"  crashing input: {crash.read_bytes()!r:.500}")
                failed = failed or code
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
