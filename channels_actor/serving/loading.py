"""Finding the endpoint that ``channels-actor serve module:endpoint`` names.

The name is ``module:attribute``: the attribute is an :class:`Endpoint`, or a
function that takes no argument and returns one (``module:create_endpoint``,
or ``module:create_endpoint()`` to say so). A factory runs in every process
that loads the app: once in the parent, for the checks, and once per worker.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .._redact import preview
from ..endpoint import Endpoint
from ..errors import ConfigurationError

__all__ = ["load_endpoint"]

_FORMAT = (
    "module:endpoint, such as myapp.web:endpoint (an Endpoint) or "
    "myapp.web:create_endpoint() (a function returning one)"
)


def load_endpoint(spec: str) -> Endpoint:
    """Import the module that ``spec`` names and return its endpoint.

    Raises:
        ConfigurationError: the name is malformed, the module cannot be
            imported (the exception its code raised is the ``__cause__``), or
            what it names is not an Endpoint nor a factory of one.
    """
    module_name, _, attribute = spec.partition(":")
    call = attribute.endswith("()")
    if call:
        attribute = attribute[:-2]
    parts = attribute.split(".")
    if not module_name or not all(part.isidentifier() for part in parts):
        msg = f"Expected {_FORMAT}; got {preview(spec)}"
        raise ConfigurationError(msg)
    target: Any = _import(module_name)
    for depth, part in enumerate(parts):
        try:
            target = getattr(target, part)
        except AttributeError:
            found = ".".join([module_name, *parts[:depth]])
            msg = f"{found} has no attribute {part!r} (expected {_FORMAT})"
            raise ConfigurationError(msg) from None
    name = f"{module_name}:{attribute}"
    if isinstance(target, Endpoint) and not call:
        return target
    if isinstance(getattr(target, "__self__", None), Endpoint):
        msg = (
            f"{name} is a method of an Endpoint (its wsgi_app, say); "
            "serve wants the Endpoint itself, such as module:endpoint"
        )
        raise ConfigurationError(msg)
    if not callable(target):
        msg = (
            f"{name} is not an Endpoint nor a function returning one: it is of type "
            f"{type(target).__name__} (expected {_FORMAT})"
        )
        raise ConfigurationError(msg)
    try:
        made = target()
    except Exception as exc:
        msg = f"{name}() raised {type(exc).__name__}: {preview(str(exc))}"
        raise ConfigurationError(msg) from exc
    if not isinstance(made, Endpoint):
        msg = f"{name}() returned a {type(made).__name__}, not an Endpoint"
        raise ConfigurationError(msg)
    return made


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            msg = (
                f"No module named {missing!r}: serve imports from the current directory "
                f"({os.getcwd()}) and PYTHONPATH"
            )
            raise ConfigurationError(msg) from None
        msg = f"Importing {module_name} failed: {exc}"
        raise ConfigurationError(msg) from exc
    except Exception as exc:
        msg = f"Importing {module_name} raised {type(exc).__name__}: {preview(str(exc))}"
        raise ConfigurationError(msg) from exc
