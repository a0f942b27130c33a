"""bench.capacity.analyse on a synthetic capacity folder: the costs, memory and sockets of a model lab found again."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from bench.capacity.analyse import CAPACITY_JSON, STEPS_CSV, analyse
from bench.capacity.main import model_of, predict_profile, read_model
from bench.capacity.plan import QUICK
from bench.capacity.report import REPORT_HTML, render_terminal
from bench.cli import main
from bench.errors import UserError

from .capacity_synthetic import MEM_PLAIN, MEM_TLS, TRUE_COSTS, build


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A synthetic capacity folder fitted by `bench capacity fit DIR --json` (:func:`analyse`): the folder, exit status, stdout."""
    out = build(tmp_path_factory.mktemp("cap") / "capacity")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["capacity", "fit", str(out), "--json"])
    return out, code, printed.getvalue()


@pytest.fixture(scope="module")
def folder(fitted: tuple[Path, int, str]) -> Path:
    return fitted[0]


def test_every_true_cost_is_found_within_its_interval(folder: Path) -> None:
    doc = read_model(folder)
    for rc in doc["costs"]:
        truth = TRUE_COSTS[rc["role"]]
        for c in rc["costs"]:
            scale = 1.0 if c["operation"] == "idle" else {"µs": 1e6, "ms": 1e3, "ms/s": 1e3}[c["unit"]]
            true = truth[c["operation"]] * scale
            # 95 % intervals: widened to 4 standard errors so a correct pipeline fails about once in 10^4
            half = (c["high"] - c["low"]) / 2 * 4 / 1.96
            assert abs(c["estimate"] - true) <= half, (rc["role"], c)
        assert rc["model"]["dropped"] == []


def test_memory_per_connection_and_sockets(folder: Path) -> None:
    doc = read_model(folder)
    fe = next(m for m in doc["memory"] if m["role"] == "frontend")
    got = {c["operation"]: c for c in fe["costs"]}
    assert got["tls_connection"]["estimate"] == pytest.approx(MEM_TLS / 1e3, rel=0.05)
    assert got["plain_connection"]["estimate"] == pytest.approx(MEM_PLAIN / 1e3, rel=0.1)
    assert "hop" in doc["sockets"]


def test_the_folder_holds_the_model_the_steps_and_the_page(folder: Path) -> None:
    assert (folder / STEPS_CSV).read_text().startswith("step,")
    page = (folder / REPORT_HTML).read_text()
    assert "Cost per operation" in page and "data:image/png;base64," in page and "Xeon X5560" in page
    doc = json.loads((folder / CAPACITY_JSON).read_text())
    assert doc["schema_version"] == 1 and doc["validation"] is None
    pred = doc["predictions"][0]
    assert pred["profile"] == "seed-peak" and pred["first_limit"]
    assert pred["processes"]["frontend"] == 13  # 121,500 client connections over 9,950 per process


def test_the_full_seed_peak_needs_the_sum_of_its_parts(folder: Path) -> None:
    pred = read_model(folder)["predictions"][0]
    ops = pred["operations"]
    fe = TRUE_COSTS["frontend"]
    true = fe["idle"] + sum(fe[k] * v for k, v in ops.items() if k in fe)
    got = pred["cores"]["frontend"]
    assert got["low"] <= true <= got["high"]
    ref = pred["reference"]
    assert ref["cores"] == 4.8 and ref["ratio"]["estimate"] == pytest.approx(got["estimate"] / 4.8)


def test_predict_scales_the_profile_and_takes_another_machine(folder: Path) -> None:
    full = predict_profile("seed-peak", folder)
    small = predict_profile("seed-peak", folder, scale=0.01, cores=16)
    assert small["machine"]["cores"] == 16
    assert small["operations"]["request"] == pytest.approx(full["operations"]["request"] * 0.01)
    assert small["total_cores"]["estimate"] < full["total_cores"]["estimate"]
    cpu = next(r for r in small["resources"] if r["name"] == "cpu")
    assert cpu["have"] == pytest.approx(16 * 0.8)


def test_the_terminal_tables(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    render_terminal(read_model(folder), Console(width=200))
    out = capsys.readouterr().out
    for text in ("cost per operation", "handshake_full_rsa", "runs out first", "Xeon X5560", "a ratio, not a promise"):
        assert text in out


def test_fit_and_predict_on_the_command_line(fitted: tuple[Path, int, str], capsys: pytest.CaptureFixture[str]) -> None:
    folder, fit_code, fit_out = fitted  # `bench capacity fit DIR --json` made the folder every test here reads
    assert main(["capacity", "predict", "seed-peak", "--model", str(folder / CAPACITY_JSON), "--json", "--scale", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scale"] == 0.1 and out["cpu_model"] == "synthetic CPU"
    assert fit_code == 0
    assert json.loads(fit_out)["scenario"] == "seed-peak"


def test_a_sweep_that_measured_nothing_says_so(tmp_path: Path) -> None:
    out = build(tmp_path / "cap", plan=QUICK)
    for part in (out / "phases").glob("*/samples"):
        for f in part.rglob("*"):
            if f.is_file():
                f.unlink()
    with pytest.raises(UserError, match=r"no process role could be fitted|measured no step"):
        analyse(out, ["seed-peak"], log=lambda _m: None)


def test_model_of_keeps_every_fit(folder: Path) -> None:
    model = model_of(read_model(folder))
    assert set(model.cpu) == {"frontend", "backend"} and model.hop_sockets is not None


def test_a_stage_the_load_generator_sent_nothing_in_is_left_out(tmp_path: Path) -> None:
    out = build(tmp_path / "cap", plan=QUICK)
    # the connections group's generator never ran (its requests are gone): its steps are not fitted
    for f in (out / "phases" / "base" / "groups" / "connections-plain" / "samples").rglob("*"):
        if f.is_file():
            f.unlink()
    doc = analyse(out, ["seed-peak"], log=lambda _m: None)
    why = {s["step"]: s["excluded"] for s in doc["steps"]}
    assert why["base:connections-plain@50"] == why["base:connections-plain@150"] == "the load generator sent nothing in the window"
    assert why["base:keepalive-tls@100"] == "" and why["base:idle"] == ""
    assert any("connections-plain@50 left out" in n for n in doc["notes"])
