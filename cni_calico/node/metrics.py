"""calico-node's metrics, kept by prometheus_client: counters and gauges declared by name, and the
process collector (CPU, memory, open file descriptors), rendered in the Prometheus text format."""

from __future__ import annotations

from typing import Callable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

Series = dict[tuple[tuple[str, str], ...], float]


class Registry:
    def __init__(self, process: bool = True) -> None:
        disable_created_metrics()  # no `_created` series beside each counter: Calico's have none
        self.registry = CollectorRegistry()
        if process:  # open fds, memory, CPU: a leak shows here first
            ProcessCollector(registry=self.registry)
        self._metrics: dict[str, Counter | Gauge] = {}

    def declare(self, name: str, kind: str, help_text: str, labels: Sequence[str] = ()) -> None:
        if name not in self._metrics:
            make = Counter if kind == "counter" else Gauge
            self._metrics[name] = make(name, help_text, labelnames=tuple(labels), registry=self.registry)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        metric = self._metrics[name]
        (metric.labels(**labels) if labels else metric).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        metric = self._metrics[name]
        assert isinstance(metric, Gauge), f"{name} is not a gauge"
        (metric.labels(**labels) if labels else metric).set(value)

    def set_function(self, name: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when scraped."""
        metric = self._metrics[name]
        assert isinstance(metric, Gauge), f"{name} is not a gauge"
        metric.set_function(read)

    def replace(self, name: str, series: Series) -> None:
        """Set a labelled gauge's whole set of series at once (series that vanished go away)."""
        metric = self._metrics[name]
        assert isinstance(metric, Gauge), f"{name} is not a gauge"
        metric.clear()
        for labels, value in series.items():
            metric.labels(**dict(labels)).set(value)

    def value(self, name: str, **labels: str) -> float:
        sample = name if name.endswith("_total") or isinstance(self._metrics[name], Gauge) else f"{name}_total"
        found = self.registry.get_sample_value(sample, labels)
        return found or 0.0

    def render(self) -> str:
        return generate_latest(self.registry).decode()
