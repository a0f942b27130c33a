"""Watching a run while it lasts: the terminal view and the metrics endpoint, both read from the run directory.

- :mod:`bench.live.state`: what is new in a growing run directory, summed up as a snapshot;
- :mod:`bench.live.view`: the terminal panel (or one line every 5 s in logs);
- :mod:`bench.live.metrics`: ``--metrics-port``, Prometheus / OpenMetrics text.
"""
