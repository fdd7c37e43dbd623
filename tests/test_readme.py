"""The README's examples run as written (the server example without its blocking serve())."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_quick_start_has_exactly_two_commands() -> None:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "channels_actor demo" in commands[0] and "pytest" in commands[1]


def test_readme_examples_run() -> None:
    server = BLOCKS[0]
    (kit,) = [block for block in BLOCKS if "def test_room" in block]
    assert server.rstrip().splitlines()[-1].startswith("endpoint.serve(")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(server.rstrip().splitlines()[:-1]), "README-server", "exec"), namespace)
    exec(compile(kit, "README-testing", "exec"), namespace)
    namespace["test_room"]()  # type: ignore[operator]
    namespace["endpoint"].stop()  # type: ignore[attr-defined]


def test_the_other_examples_run() -> None:
    """Each remaining block builds what it shows (a RedisPubSub connects only when started)."""
    others = [block for block in BLOCKS[1:] if "def test_room" not in block]
    assert others
    for number, block in enumerate(others):
        namespace: dict[str, object] = {"__name__": f"readme_block_{number}"}  # Flask(__name__)
        exec(compile(block, f"README-block-{number}", "exec"), namespace)
        endpoint = namespace.get("endpoint")
        if endpoint is not None:
            endpoint.stop()  # type: ignore[attr-defined]
