#!/usr/bin/env python3
"""Measure the duet gate on this machine: A/A false alarms, power on a planted +5 % cost, the planted +10 % p99.

Each gate is a real `bench gate --run` (two labs, one schedule). Results are
appended to a JSON-lines file, one line per gate, so the campaign can run in
pieces (``--max-gates``: how many gates this call runs) and be resumed; run each
piece under the lab lock on a shared machine. ``--report`` prints the tally.

    scripts/gate_campaign.py aa --gates 20 --max-gates 4        # A/A: one config against itself
    scripts/gate_campaign.py power --gates 20 --max-gates 4     # candidate: open's planted-cost variant
    scripts/gate_campaign.py p99 --gates 5 --max-gates 4        # server delay 20 ms vs 22 ms
    scripts/gate_campaign.py --report

Every gate's folder keeps its gate.json, duet.json, both run directories and
both sides' per-slice figures (slices-<side>.csv, for re-analysis).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "gate_campaign"
BENCH = [sys.executable, "-m", "bench.cli"]

KINDS = {
    # A/A: the open scenario against itself; every FAIL is a false alarm
    "aa": [],
    # A/A at --rate auto: the probe picks the load (60 % of what both labs hold at once)
    "auto": [],
    # power: the candidate adds per-request header work costing about +5 % HAProxy CPU per request
    "power": ["--candidate-variant", "planted-cost"],
    # p99: servers answer after 400 ms (baseline) and 440 ms (candidate): latency dominated by a known component.
    # (20 ms against 22 ms was tried first: p99 was 35-80 ms, the machine's tail, and the gate could not tell.)
    "p99": [
        *("--baseline-scenario", str(HERE / "delay-400ms.yaml"), "--candidate-scenario", str(HERE / "delay-440ms.yaml")),
        *("--rule", "latency_ms.p99: +5%", "--rule", "latency_ms.p50: +5%", "--rule", "errors.pct: <= 0.01"),
    ],
}


def gate_command(kind: str, index: int, folder: Path, rate: float, budget: str, extra: list[str]) -> list[str]:
    out = folder / f"{kind}-{index:02d}"
    rate_args = ["--rate", "auto" if rate <= 0 or kind == "auto" else f"{rate:g}"]
    return [*BENCH, "gate", "--run", "open", *rate_args, "--budget", budget, "--out", str(out), "--json", str(folder / f"{kind}-{index:02d}.json"), *KINDS[kind], *extra]


def run_gate(kind: str, index: int, folder: Path, rate: float, budget: str, extra: list[str]) -> dict:
    out = folder / f"{kind}-{index:02d}"
    if out.exists():
        shutil.rmtree(out)
    verdict_file = folder / f"{kind}-{index:02d}.json"
    cmd = gate_command(kind, index, folder, rate, budget, extra)
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, check=False, text=True, cwd=ROOT, timeout=1800)
    seconds = time.time() - started
    (folder / f"{kind}-{index:02d}.log").write_text(proc.stdout + proc.stderr)
    record: dict = {"kind": kind, "index": index, "exit": proc.returncode, "seconds": round(seconds, 1), "started": time.strftime("%H:%M:%S", time.localtime(started))}
    if verdict_file.exists():
        v = json.loads(verdict_file.read_text())
        record["verdict"] = v["verdict"]
        record["slices"] = v.get("duet", {}).get("slices")
        record["looks"] = v.get("duet", {}).get("looks")
        record["rules"] = {
            r["rule"]: {k: r.get(k) for k in ("status", "ratio", "ci", "detectable_pct", "more", "alpha")} for r in v["rules"]
        }
        record["notes"] = v.get("notes")
        _keep_slices(out)
    else:
        record["verdict"] = "error"
        record["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return record


def _keep_slices(out: Path) -> None:
    """Save both sides' per-slice figures next to the duet (for re-analysis without re-reading the samples)."""
    sys.path.insert(0, str(ROOT))
    from bench.duet import read_duet, slices_between
    from bench.slices import side_slices

    doc = read_duet(out)
    edges = slices_between(doc["design"], int(doc.get("slices") or 0))
    for side, rel in doc["sides"].items():
        side_slices(out / rel, edges).to_csv(out / f"slices-{side}.csv", index=False)


def report(folders: list[Path]) -> None:
    """The tally of every gate in ``folders`` (one campaign may run in several checkouts), per kind."""
    rows = []
    for folder in folders:
        results = folder / "results.jsonl"
        for line in results.read_text().splitlines() if results.exists() else []:
            if line.strip():
                rows.append({**json.loads(line), "folder": folder})
    spread = between_lab_sd([r for r in rows if r["kind"] in ("aa", "auto")])
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        verdicts = [r["verdict"] for r in mine]
        secs = sorted(r["seconds"] for r in mine)
        print(f"{kind}: {len(mine)} gates: fail {verdicts.count('fail')}, pass {verdicts.count('pass')}, inconclusive {verdicts.count('inconclusive')}, error {verdicts.count('error')}; "
              f"seconds per gate median {secs[len(secs) // 2]:.0f} (min {secs[0]:.0f}, max {secs[-1]:.0f})")
        n, fails = len(mine), verdicts.count("fail")
        lo, hi = clopper_pearson(fails, n)
        what = "false alarms" if kind in ("aa", "auto") else "caught"
        print(f"    {what}: {fails}/{n} gates failed = {100 * fails / n:.1f}% (95 % Clopper-Pearson {lo:.1f} .. {hi:.1f}%)")
        per_rule: dict[str, list[str]] = {}
        for r in mine:
            for rule, o in (r.get("rules") or {}).items():
                per_rule.setdefault(rule, []).append(o["status"])
        for rule, st in per_rule.items():
            print(f"    {rule}: fail {st.count('fail')}, pass {st.count('pass')}, inconclusive {st.count('inconclusive')}")
        instance_effect(mine)
        if spread is not None and kind in ("aa", "auto", "power"):
            with_spread(mine, spread)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate k/n, in %."""
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return 100 * lo, 100 * hi


def _gate_files(r: dict) -> tuple[Any, Any, dict] | None:
    """One gate's per-slice figures (baseline, candidate) and its duet.json (None if not on disk)."""
    import pandas as pd

    out = r["folder"] / f"{r['kind']}-{r['index']:02d}"
    try:
        b, c = (pd.read_csv(out / f"slices-{side}.csv") for side in ("baseline", "candidate"))
        return b, c, json.loads((out / "duet.json").read_text())
    except (OSError, ValueError, KeyError):
        return None


def _cost_estimate(r: dict, files: tuple[Any, Any, dict] | None = None) -> tuple[Any, float] | None:
    """One gate's paired cost estimate over its slices and the alpha of its deciding look (None if not on disk)."""
    sys.path.insert(0, str(ROOT))
    from bench import stats

    files = files or _gate_files(r)
    if files is None:
        return None
    b, c, doc = files
    e = stats.paired(b["cost.lb_us_per_request"], c["cost.lb_us_per_request"])
    if e is None or e.se == 0:
        return None
    looks = doc.get("looks") or []
    return e, float(looks[-1]["alpha"]) if looks else stats.ALPHA


def between_lab_sd(aa_rows: list[dict]) -> float | None:
    """How much two labs of one config differ in cost for a whole duet, beyond the slices' noise (log scale).

    Method of moments over A/A gates: the variance of the gates' estimates less the
    mean of their squared standard errors (what slice noise alone would give).
    """
    import numpy as np

    est = [x[0] for x in map(_cost_estimate, aa_rows) if x is not None]
    if len(est) < 3:
        return None
    centers = np.array([e.center for e in est])
    return float(np.sqrt(max(centers.var(ddof=1) - np.mean([e.se**2 for e in est]), 0.0)))


def with_spread(rows: list[dict], spread: float) -> None:
    """Each gate's cost rule judged again with the between-lab spread added to its standard error (in quadrature).

    What the verdicts would have been had the interval counted how two labs of one
    config differ, at each gate's deciding look (the gate would have gone on
    longer where that look became inconclusive, but slices cannot shrink the spread).
    """
    import dataclasses

    import numpy as np

    from bench import stats
    from bench.gate.rules import DUET_RULES, parse_rule

    limit = next(r.threshold for r in map(parse_rule, DUET_RULES) if r.metric == "cost.lb_us_per_request")
    got = {stats.FAIL: 0, stats.PASS: 0, stats.INCONCLUSIVE: 0}
    for x in map(_cost_estimate, rows):
        if x is not None:
            e, alpha = x
            got[stats.decide(dataclasses.replace(e, se=float(np.hypot(e.se, spread))), limit, alpha).status] += 1
    print(f"    cost rule +{100 * limit:g}% judged with the between-lab spread ({100 * spread:.2f}%, from the A/A gates) "
          f"in the interval: fail {got[stats.FAIL]}, pass {got[stats.PASS]}, inconclusive {got[stats.INCONCLUSIVE]}")


def instance_effect(rows: list[dict]) -> None:
    """Is there a lab-instance effect? Per gate, the cost estimate over its slices in units of its own standard error.

    Without one, z = log-ratio / se is about N(0, sd 1) over A/A gates (t with the
    gates' df); an sd of z well above 1 means the duets differ more from each other
    than their slices say, so a systematic difference between two lab instances
    persists across slices. Also shown: whether the side that started first matters.
    """
    import numpy as np

    zs, centers, firsts, r1s, nws = [], [], [], [], []
    for r in rows:
        files = _gate_files(r)
        est = _cost_estimate(r, files)
        if files is None or est is None:
            continue
        b, c, doc = files
        e = est[0]
        zs.append(e.center / e.se)
        centers.append(e.center)
        firsts.append((doc.get("start_order") or ["?"])[0])
        # drift inside the duet would show as slices that follow each other: lag-1 autocorrelation of the
        # log-ratios, and a Newey-West standard error (Bartlett weights) in place of the independent one
        d = np.log(c["cost.lb_us_per_request"].to_numpy(float)) - np.log(b["cost.lb_us_per_request"].to_numpy(float))
        d = d[np.isfinite(d)]
        x = d - d.mean()
        if d.size >= 6 and (x * x).sum() > 0:
            r1s.append(float((x[1:] * x[:-1]).sum() / (x * x).sum()))
            lags = max(1, int(4 * (d.size / 100) ** (2 / 9)))
            var = (x * x).sum() / d.size + sum(2 * (1 - k / (lags + 1)) * (x[k:] * x[:-k]).sum() / d.size for k in range(1, lags + 1))
            if var > 0:
                nws.append(d.mean() / np.sqrt(var / d.size))
    if len(zs) < 3:
        return
    z = np.array(zs)
    cen = 100 * np.array(centers)
    by_first = {f: cen[[x == f for x in firsts]] for f in sorted(set(firsts))}
    print(f"    cost log-ratio per gate: mean {cen.mean():+.2f}%, sd {cen.std(ddof=1):.2f}% over {len(cen)} gates; "
          f"z = centre/se: sd {z.std(ddof=1):.2f} (about 1 without a lab-instance effect), |z| > 2 in {int((abs(z) > 2).sum())}")
    if len(nws) >= 3:
        print(f"    drift? lag-1 autocorrelation of the slices' log-ratios: mean {np.mean(r1s):+.2f}; "
              f"Newey-West z sd {np.std(nws, ddof=1):.2f} (A/A: close to the z sd above means an offset per lab pair, not drift)")
    print("    by the side started first: " + ", ".join(f"{f}: mean {v.mean():+.2f}% (n={v.size})" for f, v in by_first.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", nargs="?", choices=sorted(KINDS))
    p.add_argument("--gates", type=int, default=20, help="gates of this kind in the whole campaign")
    p.add_argument("--max-gates", type=int, default=4, help="gates to run in this call (keep a piece under ~20 minutes)")
    p.add_argument("--rate", type=float, default=400.0, help="offered load per side, requests/s (0: --rate auto)")
    p.add_argument("--budget", default="4m")
    p.add_argument("--folder", type=Path, action="append", help="where the gates and results.jsonl go (default reports/gate-campaign); "
                   "repeat it with --report to tally several campaigns together")
    p.add_argument("--report", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the `bench gate` command of the next gate and stop")
    args, extra = p.parse_known_args()  # anything else goes to `bench gate` (after --)
    folders = args.folder or [ROOT / "reports" / "gate-campaign"]
    if args.report or not args.kind:
        report(folders)
        return 0
    if len(folders) > 1:
        p.error("give one --folder to run gates in")
    args.folder = folders[0]
    results = args.folder / "results.jsonl"
    args.folder.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    index = len([r for r in done if r["kind"] == args.kind])
    extra = [a for a in extra if a != "--"]
    if args.dry_run:
        print(" ".join(gate_command(args.kind, index + 1, args.folder, args.rate, args.budget, extra)))
        return 0
    for _ in range(args.max_gates):
        if index >= args.gates:
            break
        index += 1
        record = run_gate(args.kind, index, args.folder, args.rate, args.budget, extra)
        with results.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(json.dumps({k: record.get(k) for k in ("kind", "index", "verdict", "seconds", "slices")}), flush=True)
    report([args.folder])
    return 0


if __name__ == "__main__":
    sys.exit(main())
