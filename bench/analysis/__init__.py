"""Analysis: raw samples of a run directory -> metrics -> summary.json (a pure function of the folder)."""
