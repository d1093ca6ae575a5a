"""Service statistics (R26). Placeholder: filled in by the metrics change."""
from __future__ import annotations

from typing import Any


def http_routes() -> list[Any]:
    return []
