"""Work orders (协同工单, R22–R25). Placeholder: filled in by the work-orders change.

Registers its WebSocket handlers with ``gateway.handles`` and its HTTP routes via ``http_routes``.
"""
from __future__ import annotations

from typing import Any


def http_routes() -> list[Any]:
    return []
