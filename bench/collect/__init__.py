"""Samplers that record a run: each writes columnar chunks into the run directory."""
