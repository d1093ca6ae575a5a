"""Logging set-up: plain text or JSON lines. Never log passwords, tokens or message bodies."""
from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, r: logging.LogRecord) -> str:
        out = {"ts": round(time.time(), 3), "level": r.levelname.lower(), "logger": r.name, "msg": r.getMessage()}
        if r.exc_info:
            out["exc"] = self.formatException(r.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "info", as_json: bool = False) -> None:
    h = logging.StreamHandler()
    h.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kefu")
    root.handlers[:] = [h]
    root.setLevel(level.upper())
    root.propagate = False
