"""Where lbbench finds its shipped files and keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or source tree) root: scenarios/, topology/ and reports/ live here.
ROOT = Path(os.environ.get("LBBENCH_HOME", Path(__file__).resolve().parents[1]))
SCENARIOS = ROOT / "scenarios"
TOPOLOGY = ROOT / "topology"
IMAGES = TOPOLOGY / "images"
TEMPLATES = TOPOLOGY / "templates"
REPORTS = ROOT / "reports"

#: Private working state of running labs (rendered configs with private keys,
#: stats sockets). Never copied into a report.
STATE = Path(os.environ.get("LBBENCH_STATE", "/var/tmp/lbbench"))
