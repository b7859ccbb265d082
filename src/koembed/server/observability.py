"""Prometheus metrics of one app, in a registry of its own."""

from __future__ import annotations


class ServerMetrics:
    """The app's Prometheus metrics, in a registry of its own (two apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("koembed_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("koembed_request_duration_seconds", "HTTP request latency by route", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                          30), registry=self.registry)
        self.batch_size = Histogram("koembed_embedding_batch_size", "Texts per encode call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                                    registry=self.registry)
        self.batch_tokens = Histogram("koembed_embedding_batch_tokens", "Tokens per encode call",
                                      buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536),
                                      registry=self.registry)
        self.queue_depth = Gauge("koembed_queue_depth", "Texts waiting to be encoded", registry=self.registry)
        self.queue_tokens = Gauge("koembed_queue_tokens", "Tokens waiting to be encoded", registry=self.registry)
        self.queue_limit = Gauge("koembed_queue_limit_tokens", "Most tokens the queue holds (max_queue_tokens)",
                                 registry=self.registry)
        self.rejected = Counter("koembed_rejected_requests", "Requests refused with 503: queue_full or timeout",
                                ["reason"], registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
