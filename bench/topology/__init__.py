"""Topologies: plan the lab (addresses, processes), render its configs and
compose project, and run its lifecycle."""
