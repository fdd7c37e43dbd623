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


KIT = [block for block in BLOCKS if "\ndef test_" in block or block.startswith("def test_")]


def test_readme_examples_run() -> None:
    """The server block, then every testing-section block on top of it, each test_ called."""
    server = BLOCKS[0]
    assert [block for block in KIT if "def test_room" in block]
    assert server.rstrip().splitlines()[-1].startswith("endpoint.serve(")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(server.rstrip().splitlines()[:-1]), "README-server", "exec"), namespace)
    server_endpoint = namespace["endpoint"]
    called = []
    for number, block in enumerate(KIT):
        exec(compile(block, f"README-testing-{number}", "exec"), namespace)
        for name in [name for name in namespace if name.startswith("test_")]:
            if name not in called:
                namespace[name]()  # type: ignore[operator]
                called.append(name)
    assert called == ["test_room", "test_two_sockets", "test_presence_pushes"]
    server_endpoint.stop()  # type: ignore[attr-defined]


def test_the_other_examples_run() -> None:
    """Each remaining block builds what it shows (a RedisPubSub connects only when started)."""
    others = [block for block in BLOCKS[1:] if block not in KIT]
    assert others
    for number, block in enumerate(others):
        namespace: dict[str, object] = {"__name__": f"readme_block_{number}"}  # Flask(__name__)
        exec(compile(block, f"README-block-{number}", "exec"), namespace)
        endpoint = namespace.get("endpoint")
        if endpoint is not None:
            endpoint.stop()  # type: ignore[attr-defined]
