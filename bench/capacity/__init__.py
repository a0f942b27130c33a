"""The capacity model: what one request, handshake, connection, held connection and megabyte cost the
load balancer, and how many cores, processes, addresses and how much memory a target profile needs.

Four stages, one module each, joined by ``bench capacity`` (bench/commands/capacity.py):

- :mod:`.sweep`: short fixed-rate steps of one operation each on a lab kept up across them
  (:mod:`.plan` says which steps), the collectors sampling throughout;
- :mod:`.measure`: each step's window -> the rates of every operation (HAProxy's own counters)
  and the CPU of every process role (cgroups), memory and sockets;
- :mod:`.fit`: cost per operation per role, a linear model over the steps with intervals
  and residuals;
- :mod:`.predict`: a target profile (:mod:`.profile`, ``profiles/*.yaml``) -> cores per role,
  processes, memory, file descriptors, ephemeral ports, headroom and what runs out first;
- :mod:`.validate`: the model's prediction for a mixed run against the run's measurement.

docs/capacity.md is the user's page.
"""
