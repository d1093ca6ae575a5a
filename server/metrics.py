"""Per-node counters (exported on /metrics in the Prometheus text format)."""
from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self.connections = 0
        self.messages_in = 0
        self.frames_out = 0
        self.slow_consumers = 0
        self.conversations_opened = 0
        self.closed = 0
        self.transfers = 0
        self.left_queue = 0
        self.decisions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def dispatched(self, reason: str) -> None:
        self.decisions[reason.split(":")[-1]] += 1

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def render(self, node: str) -> str:
        lines = [
            "# TYPE kefu_connections gauge", f'kefu_connections{{node="{node}"}} {self.connections}',
            "# TYPE kefu_messages_in_total counter", f'kefu_messages_in_total{{node="{node}"}} {self.messages_in}',
            "# TYPE kefu_slow_consumer_closes_total counter",
            f'kefu_slow_consumer_closes_total{{node="{node}"}} {self.slow_consumers}',
            "# TYPE kefu_conversations_opened_total counter",
            f'kefu_conversations_opened_total{{node="{node}"}} {self.conversations_opened}',
            "# TYPE kefu_dispatch_decisions_total counter",
        ]
        lines += [f'kefu_dispatch_decisions_total{{node="{node}",reason="{r}"}} {v}' for r, v in sorted(self.decisions.items())]
        lines.append("# TYPE kefu_errors_total counter")
        lines += [f'kefu_errors_total{{node="{node}",code="{c}"}} {v}' for c, v in sorted(self.errors.items())]
        return "\n".join(lines) + "\n"
