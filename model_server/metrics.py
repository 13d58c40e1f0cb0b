"""The server's Prometheus text endpoint (``GET /monitoring/prometheus/metrics``, TF Serving's path).

Written by hand in the text exposition format (version 0.0.4) rather than with
``prometheus_client``: a handful of series, updated from the event loop only,
and no dependency for the serving image to carry.
"""
from __future__ import annotations

import bisect
import collections
from typing import Callable, Dict, List, Optional

# Upper bounds in seconds: from a cached batch-1 call (~1 ms) to the body timeout.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREFIX = "model_server"


class Metrics:
    def __init__(self, model_name: str, version: Callable[[], Optional[int]]):
        self.model_name = model_name
        self._version = version
        self.requests: Dict[str, int] = collections.Counter()        # by status code
        self.closed: Dict[str, int] = collections.Counter()          # connections closed by the server, by why
        self.rejected: Dict[str, int] = collections.Counter()        # turned away before any work, by why
        self._bucket_counts: List[int] = [0] * len(BUCKETS)
        self._sum = 0.0
        self._count = 0
        self.in_flight = 0
        self.open_connections = 0

    def observe(self, status: int, seconds: float) -> None:
        self.requests[str(status)] += 1
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            self._bucket_counts[i] += 1
        self._sum += seconds
        self._count += 1

    def text(self) -> str:
        p, model = PREFIX, self.model_name
        out = [f"# HELP {p}_requests_total Requests answered, by HTTP status code.",
               f"# TYPE {p}_requests_total counter"]
        out += [f'{p}_requests_total{{model="{model}",code="{code}"}} {n}' for code, n in sorted(self.requests.items())]
        out += [f"# HELP {p}_request_duration_seconds From the end of the request head to the response written.",
                f"# TYPE {p}_request_duration_seconds histogram"]
        cumulative = 0
        for bound, n in zip(BUCKETS, self._bucket_counts):
            cumulative += n
            out.append(f'{p}_request_duration_seconds_bucket{{model="{model}",le="{bound:g}"}} {cumulative}')
        out += [f'{p}_request_duration_seconds_bucket{{model="{model}",le="+Inf"}} {self._count}',
                f'{p}_request_duration_seconds_sum{{model="{model}"}} {self._sum:.6f}',
                f'{p}_request_duration_seconds_count{{model="{model}"}} {self._count}']
        version = self._version()
        out += [f"# HELP {p}_model_version The version being served (YYYYMMDD of its span); -1 before any.",
                f"# TYPE {p}_model_version gauge",
                f'{p}_model_version{{model="{model}"}} {version if version is not None else -1}',
                f"# HELP {p}_in_flight_requests Requests admitted and not yet answered.",
                f"# TYPE {p}_in_flight_requests gauge",
                f'{p}_in_flight_requests{{model="{model}"}} {self.in_flight}',
                f"# HELP {p}_open_connections Client connections open now.",
                f"# TYPE {p}_open_connections gauge",
                f'{p}_open_connections{{model="{model}"}} {self.open_connections}',
                f"# HELP {p}_connections_closed_total Connections the server closed, by reason.",
                f"# TYPE {p}_connections_closed_total counter"]
        out += [f'{p}_connections_closed_total{{model="{model}",reason="{r}"}} {n}'
                for r, n in sorted(self.closed.items())]
        out += [f"# HELP {p}_rejected_total Requests or connections turned away over a bound, by which.",
                f"# TYPE {p}_rejected_total counter"]
        out += [f'{p}_rejected_total{{model="{model}",reason="{r}"}} {n}' for r, n in sorted(self.rejected.items())]
        return "\n".join(out) + "\n"


def parse(text: str) -> Dict[str, float]:
    """``name{labels}`` -> value, for tests and the benchmark (not a full exposition parser)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values
