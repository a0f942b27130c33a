"""Load generation: Locust users, the per-request capture and the Locust runner."""
