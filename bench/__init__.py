"""lbbench: a load-testing and capacity-benchmark harness for software load balancers."""

__version__ = "0.1.0"
