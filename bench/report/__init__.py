"""Report: summary.json, derived series, PNG plots and a self-contained report.html, built only from a run directory."""

from .build import build_report

__all__ = ["build_report"]
