"""Counters and gauges in the Prometheus text format. Pure and thread-safe."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Metric:
    name: str
    kind: str  # counter or gauge
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Metric] = {}

    def declare(self, name: str, kind: str, help_text: str) -> None:
        with self._lock:
            self._metrics.setdefault(name, Metric(name, kind, help_text))

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            metric = self._metrics[name]
            metric.values[key] = metric.values.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._metrics[name].values[tuple(sorted(labels.items()))] = value

    def replace(self, name: str, series: dict[tuple[tuple[str, str], ...], float]) -> None:
        """Set a labelled gauge's whole set of series at once (series that vanished go away)."""
        with self._lock:
            self._metrics[name].values = dict(series)

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._metrics[name].values.get(tuple(sorted(labels.items())), 0)

    def render(self) -> str:
        lines = []
        with self._lock:
            for metric in sorted(self._metrics.values(), key=lambda m: m.name):
                lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
                series = metric.values or {(): 0.0}
                for labels, value in sorted(series.items()):
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    number = int(value) if float(value).is_integer() else value
                    lines.append(f"{metric.name}{{{label_text}}} {number}" if label_text else f"{metric.name} {number}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
