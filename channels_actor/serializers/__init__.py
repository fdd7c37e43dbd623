"""Serializers: pure functions between messages and wire frames."""

from __future__ import annotations

from .base import Frame as Frame
from .base import Serializer as Serializer
from .negotiate import for_vsn as for_vsn
from .noop import NoopSerializer as NoopSerializer
from .v1_json import V1JSONSerializer as V1JSONSerializer
from .v2_json import V2JSONSerializer as V2JSONSerializer

__all__ = [
    "Frame",
    "NoopSerializer",
    "Serializer",
    "V1JSONSerializer",
    "V2JSONSerializer",
    "for_vsn",
]
