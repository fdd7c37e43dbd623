"""Fuzz suite: malformed input for the decoders, the protocol core, the head parser and framing.

The short form runs with the rest of the suite: every test here is
derandomized (the same inputs on every run, so CI is reproducible) and sized so
the whole package takes seconds. The long form is ``python -m tests.fuzz``: the
same tests with many more examples and a fresh seed each run (printed, so a
failure can be replayed), plus atheris targets when atheris is installed.

The long form talks to the tests through two environment variables, read here:
``CHANNELS_ACTOR_FUZZ_EXAMPLES`` (examples per hypothesis test; unset means the
short form) and ``CHANNELS_ACTOR_FUZZ_SEED`` (the seed of the plain mutation
loops).
"""

from __future__ import annotations

import os
import random
from collections import Counter

from hypothesis import HealthCheck, settings

__all__ = ["FED", "LONG_EXAMPLES", "count", "fuzz_settings", "make_rng", "mutate"]

_examples = os.environ.get("CHANNELS_ACTOR_FUZZ_EXAMPLES")
LONG_EXAMPLES: int | None = int(_examples) if _examples else None
_SEED = int(os.environ.get("CHANNELS_ACTOR_FUZZ_SEED", "0"))

# Inputs fed to each target in this process, printed at the end of the run
# (tests/fuzz/conftest.py), so both forms report what they covered.
FED: Counter[str] = Counter()


def fuzz_settings(short: int, *, weight: float = 1.0, **extra: object) -> settings:
    """Hypothesis settings: ``short`` derandomized examples, or the long form's count.

    ``weight`` scales the long form's per-test count for targets whose examples
    are expensive (one real connection each) or cheap (one pure call each).
    """
    common: dict[str, object] = {
        "deadline": None,
        # Property tests must not write a .hypothesis directory into the tree.
        "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        **extra,
    }
    if LONG_EXAMPLES is None:
        return settings(max_examples=short, derandomize=True, **common)  # type: ignore[arg-type]
    examples = max(short, int(LONG_EXAMPLES * weight))
    return settings(max_examples=examples, derandomize=False, **common)  # type: ignore[arg-type]


def count(short: int, *, weight: float = 1.0) -> int:
    """How many inputs a plain (non-hypothesis) mutation loop feeds."""
    if LONG_EXAMPLES is None:
        return short
    return max(short, int(LONG_EXAMPLES * weight))


def make_rng(name: str) -> random.Random:
    """A seeded generator per loop: fixed in the short form, the run's seed in the long."""
    return random.Random(f"{_SEED}:{name}")


def mutate(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One to four random edits: flip, set, insert, delete, duplicate, truncate, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randint(0, len(out))
        if op == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[at % len(out)] = rng.choice((0, 0x22, 0x2C, 0x5B, 0x5D, 0x7B, 0x7D, 0x80, 0xFF))
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            del out[at : at + rng.randint(1, 8)]
        elif op == 4:
            out[at:at] = out[at : at + rng.randint(1, 16)]
        elif op == 5:
            del out[at:]
        else:
            donor = rng.choice(donors)
            cut = rng.randint(0, len(donor))
            out[at:] = donor[cut:]
    return bytes(out)
