"""What a run directory holds and how it is read and written.

This package sits below every other part of lbbench (it imports none of them):

- :mod:`bench.results.layout`: where every file of a run directory (and of a lab's
  state folder) lives; the one place that spells ``run.json``, ``samples/`` ...;
- :mod:`bench.results.events`: ``events.jsonl``, written and read one way;
- :mod:`bench.results.tables`: the registry of every sample table and its schema;
- :mod:`bench.results.store`: the one way sample tables are written, compacted and read;
- :mod:`bench.results.run`, :mod:`bench.results.summary`, :mod:`bench.results.lab` (and
  the duet and gate documents): the typed, versioned JSON documents
  (:mod:`bench.results.document` reads and writes them, :mod:`bench.results.schema`
  exports their JSON Schema);
- :mod:`bench.results.histogram`: the mergeable latency histograms of ``latency_hist``
  (written by the load generators, read by the analysis).
"""
