"""The package's import graph points one way, layer by layer.

Every import counts, ``TYPE_CHECKING`` ones and any inside a function: a
type-only import is still a dependency a reader has to follow. Each module
sits in one layer of ``LAYERS`` (lowest first) and imports only from its own
layer or below; the graph has no cycle; and no module of the package is
imported inside a function. A new module fails here until it is given a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import channels_actor

ROOT = Path(channels_actor.__file__).parent
PACKAGE = "channels_actor"

LAYERS: list[tuple[str, set[str]]] = [
    (
        "values",
        {
            "errors",
            "_constants",
            "message",
            "_stats",
            "_redact",
            "config",
            "_types",
            "router",
            "_timer",
            "_writes",
        },
    ),
    (
        "pure",
        {
            "serializers",
            "serializers.base",
            "serializers.noop",
            "serializers.v1_json",
            "serializers.v2_json",
            "serializers.negotiate",
            "socket",
            "_patterns",
            "results",
            "transports",
            "transports.base",
            "transports.frames",
            "transports.http",
            "transports.handshake",
            "transports.incomplete",
            "transports.memory",
            "pubsub.wire",
            "token",
            "presence.state",
            "presence.diffs",
        },
    ),
    ("behaviour", {"channel", "handler"}),
    ("sans-IO", {"protocol"}),
    (
        "actors",
        {
            "_pool",
            "_messages",
            "pubsub.adapter",
            "pubsub.fanout",
            "pubsub.registry",
            "pubsub.outages",
            "pubsub.redis_nodes",
            "pubsub.redis_adapter",
            "pubsub",
            "supervisor",
            "_channel_server",
            "_runtime",
            "presence.tracker",
            "presence.publisher",
        },
    ),
    ("connection", {"connection"}),
    (
        "I/O",
        {
            "transports.reactor",
            "_flow",
            "transports.websocket",
            "transports.sockets",
            "transports.served",
            "transports.requests",
            "transports.gunicorn",
            "transports.wsgi",
            "upgrade",
            "server",
        },
    ),
    ("wiring", {"endpoint"}),
    (
        "applications",
        {
            "testing",
            "presence",
            "demo",
            "demo.assets",
            "serving",
            "serving.logs",
            "serving.signals",
            "serving.loading",
            "serving.worker",
            "serving.supervision",
            "serving.command",
            "__main__",
            "",
        },
    ),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules ``node`` in ``module`` imports ('' is the package itself)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level == 0:
        names = [f"{node.module}.{alias.name}" for alias in node.names]
    else:
        base = module.split(".") if module else []
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        prefix = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
        names = [f"{prefix}.{alias.name}" for alias in node.names]
    targets = []
    for name in names:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            continue
        rel = name[len(PACKAGE) + 1 :] if name != PACKAGE else ""
        while rel not in MODULES:  # from .x import Name: the module is .x
            rel = rel.rpartition(".")[0]
        if rel != module:
            targets.append(rel)
    return targets


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {}
    inside_functions: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        edges[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module].update(_target(module, node))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and _target(module, inner):
                        inside_functions.append(f"{path.name}:{inner.lineno} {ast.unparse(inner)}")
    return edges, inside_functions


EDGES, INSIDE_FUNCTIONS = _graph()
LAYER_OF = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}


def _name(module: str) -> str:
    return f"{PACKAGE}.{module}" if module else PACKAGE


def test_every_module_has_a_layer() -> None:
    missing = sorted(_name(m) for m in MODULES if m not in LAYER_OF)
    stale = sorted(_name(m) for m in LAYER_OF if m not in MODULES)
    assert not missing, f"give these modules a layer in LAYERS: {missing}"
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module, targets in EDGES.items():
        for target in targets:
            if LAYER_OF[target] > LAYER_OF[module]:
                mine, theirs = LAYERS[LAYER_OF[module]][0], LAYERS[LAYER_OF[target]][0]
                upward.append(f"{_name(module)} ({mine}) imports {_name(target)} ({theirs})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(sorted(upward))


def _cycle() -> list[str] | None:
    """One import cycle, if any (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(EDGES[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(EDGES):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(_name(m) for m in cycle or [])


def test_no_package_import_inside_a_function() -> None:
    assert not INSIDE_FUNCTIONS, (
        "imports inside functions hide a dependency (move them to the top; an optional "
        f"heavy third-party package may stay, with a comment saying so): {INSIDE_FUNCTIONS}"
    )


@pytest.mark.parametrize(
    ("module", "node"),
    [
        ("channel", "from .results import normalize_reply"),
        ("pubsub.registry", "from .._messages import DispatchOut"),
        ("pubsub", "from .registry import Dispatch"),
        ("", "from .endpoint import Endpoint"),
        ("demo", "from channels_actor import Channel"),
        ("socket", "from .serializers import Serializer"),
    ],
)
def test_imports_are_resolved_to_modules(module: str, node: str) -> None:
    """The graph is only as good as its resolution of relative imports."""
    parsed = ast.parse(node).body[0]
    assert isinstance(parsed, ast.ImportFrom)
    expected = {
        "channel": ["results"],
        "pubsub.registry": ["_messages"],
        "pubsub": ["pubsub.registry"],
        "": ["endpoint"],
        "demo": [""],
        "socket": ["serializers"],
    }[module]
    assert _target(module, parsed) == expected
