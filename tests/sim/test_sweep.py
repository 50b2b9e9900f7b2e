"""Sweeps: confidence intervals, rates, failing-variant files that replay to the same verdict,
executors (local always; dask when installed), and the `vigil sweep` command."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from sim.executors import ExecutorUnavailable, LocalExecutor, make_executor
from sim.sweep import (
    VariantOutcome,
    clopper_pearson_interval,
    sweep_rates,
    sweep_seeds,
    wilson_interval,
)


def square(x: int) -> int:
    return x * x


# --------------------------------------------------------------------------- intervals
@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (0, 1)])
def test_intervals_match_scipy(k: int, n: int) -> None:
    for method, fn in (("wilson", wilson_interval), ("exact", clopper_pearson_interval)):
        ref = binomtest(k, n).proportion_ci(0.95, method=method)
        lo, hi = fn(k, n)
        assert lo == pytest.approx(ref.low, abs=1e-9)
        assert hi == pytest.approx(ref.high, abs=1e-9)


def test_known_values_and_zero_failures() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = clopper_pearson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0362, abs=1e-4)  # ~ the rule of three, 3/n
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_interval_contains_estimate_and_is_ordered(kn: tuple[int, int]) -> None:
    k, n = kn
    for lo, hi in (wilson_interval(k, n), clopper_pearson_interval(k, n)):
        assert 0.0 <= lo <= k / n <= hi <= 1.0
        assert hi - lo > 0.0
    if k < n:  # one more failure never lowers the bounds
        lo1, hi1 = wilson_interval(k + 1, n)
        lo0, hi0 = wilson_interval(k, n)
        assert lo1 >= lo0 - 1e-12 and hi1 >= hi0 - 1e-12


def test_rates_count_the_right_units() -> None:
    outs = [
        VariantOutcome(seed=0, passed=True, faults=2, faults_detected=2,
                       detection_delays=[0.1, 0.3]),
        VariantOutcome(seed=1, passed=False, faults=2, faults_detected=1,
                       detection_delays=[0.2], silent_failure_s=0.5, takeover_requested=True,
                       took_over_before_deadline=False, mrm=True),
        VariantOutcome(seed=2, passed=False, error="RuntimeError: x"),
        VariantOutcome(seed=3, passed=True, false_alarms=2, takeover_requested=True,
                       took_over_before_deadline=True),
    ]
    r = {x.name: x for x in sweep_rates(outs)}
    assert (r["failure"].k, r["failure"].n) == (2, 4)
    assert (r["crash"].k, r["silent failure"].k, r["false alarm"].k) == (1, 1, 1)
    assert (r["missed detection"].k, r["missed detection"].n) == (1, 4)
    assert r["missed detection"].unit == "faults"
    assert (r["no takeover by deadline"].k, r["no takeover by deadline"].n) == (1, 2)
    assert r["minimal-risk manoeuvre"].k == 1
    lo, hi = wilson_interval(2, 4)
    assert (r["failure"].low, r["failure"].high) == (lo, hi)
    exact = {x.name: x for x in sweep_rates(outs, "exact")}
    assert exact["failure"].high == clopper_pearson_interval(2, 4)[1]


# --------------------------------------------------------------------------- executors
def test_local_executor_maps_in_order_and_in_parallel() -> None:
    items = list(range(7))
    with LocalExecutor(2) as ex:
        assert ex.map(square, items) == [x * x for x in items]
        got = dict(ex.imap(square, items))
        assert got == {i: i * i for i in items}
    assert LocalExecutor(1).map(square, items) == [x * x for x in items]


def test_unknown_or_missing_engines_are_clear_errors() -> None:
    with pytest.raises(ExecutorUnavailable, match="unknown engine"):
        make_executor("spark")
    with pytest.raises(ExecutorUnavailable, match="address"):
        make_executor("local", address="tcp://x:1")
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(ExecutorUnavailable, match="pip install 'vigil\\[ray\\]'"):
            make_executor("ray")


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask[distributed] is an optional extra (pip install 'vigil[dask]')")
def test_dask_executor_same_interface() -> None:
    from sim.executors import DaskExecutor

    with DaskExecutor(jobs=2) as ex:
        assert ex.name == "dask" and ex.jobs == 2
        assert ex.map(square, list(range(5))) == [0, 1, 4, 9, 16]


# --------------------------------------------------------------------------- sweeps

SWEPT: dict[str, Any] = {
    "name": "late dropout",
    "duration_s": 4.0,
    "seed": 0,
    "world": {
        "ego": {"speed": 10.0},
        "actors": [{"id": 1, "kind": "vehicle", "position": [30.0, 0.0],
                    "motion": {"pattern": "constant_velocity", "velocity": [10.0, 0.0]}}],
    },
    "sensors": [{"kind": "camera", "channel": "camera"},
                {"kind": "radar", "channel": "radar", "clutter_rate": 0.2}],
    "supervisor": {"channels": [{"name": "camera", "kind": "camera", "role": "primary"},
                                {"name": "radar", "kind": "radar", "role": "redundant"}]},
    "faults": [{"kind": "dropout", "channel": "radar", "start": {"at": 1.0}}],
    # DEGRADED by 3 s is only possible when the dropout starts at 1 s, not at 3.5 s
    "expectations": [{"kind": "max_silent_failure_s"},
                     {"kind": "state_by", "t": 3.0, "state": "DEGRADED"}],
    "sweep": {"seeds": [0, 100], "params": [
        {"path": "faults.0.start.at", "dist": "choice", "values": [1.0, 3.5]}]},
}


@pytest.fixture
def swept(tmp_path: Path) -> Path:
    p = tmp_path / "swept.yaml"
    p.write_text(yaml.safe_dump(copy.deepcopy(SWEPT), sort_keys=False))
    return p


def test_sweep_saves_exactly_the_failing_variants_and_they_replay(
    swept: Path, tmp_path: Path
) -> None:
    from sim.runner import run_scenario
    from sim.scenario import load_scenario
    from sim.sweep import run_sweep

    cfg = load_scenario(swept)
    seeds = sweep_seeds(cfg, 8)
    assert seeds == list(range(8))
    with LocalExecutor(2) as ex:
        rep = run_sweep(cfg, seeds, ex, source=str(swept), out_dir=tmp_path / "out")
    late = {o.seed for o in rep.outcomes if o.params["faults.0.start.at"] == 3.5}
    assert 0 < len(late) < 8  # the draw mixes both onsets
    assert {o.seed for o in rep.failed} == late
    assert rep.rates[0].k == len(late) and rep.rates[0].n == 8
    files = sorted(Path(f) for f in rep.failure_files)
    assert [f.name for f in files] == sorted(f"late-dropout-seed{s}.yaml" for s in late)
    # a saved variant replays to the same failure, and so does scenario + seed
    f = files[0]
    seed = int(f.stem.rsplit("seed", 1)[1])
    saved = run_scenario(f)
    again = run_scenario(swept, seed=seed, variant=True)
    assert not saved.passed and not again.passed
    assert [c.name for c in saved.failures] == ["state_by[DEGRADED]"]
    assert saved.seed == again.seed == seed
    assert saved.series.state.tobytes() == again.series.state.tobytes()
    assert saved.series.objects.pos.tobytes() == again.series.objects.pos.tobytes()
    assert "sweep" not in yaml.safe_load(f.read_text())
    # serial and parallel sweeps agree variant by variant
    with LocalExecutor(1) as ex:
        serial = run_sweep(cfg, seeds, ex)
    assert [(o.seed, o.passed, o.params) for o in serial.outcomes] == [
        (o.seed, o.passed, o.params) for o in rep.outcomes
    ]
    assert serial.failure_files == []


def test_vigil_sweep_command(swept: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from sim.cli import main

    out = tmp_path / "sw"
    code = main(["sweep", str(swept), "--variants", "6", "--jobs", "2", "--out", str(out)])
    text = capsys.readouterr().out
    doc = json.loads((out / "sweep.json").read_text())
    n_failed = len(doc["failed_seeds"])
    assert code == (1 if n_failed else 0)
    assert len(list((out / "failures").glob("*.yaml"))) == n_failed
    assert (out / "sweep.md").read_text().startswith("# Sweep of late dropout")
    assert "silent failure" in text and "95 % interval" in text
    failure = doc["rates"][0]
    assert failure["name"] == "failure" and failure["k"] == n_failed and failure["n"] == 6
    assert failure["low"] <= failure["rate"] <= failure["high"]
    # a generous failure-rate bound passes the gate, a strict one does not
    args = ["sweep", str(swept), "--variants", "6", "--jobs", "1", "--out", str(tmp_path / "b")]
    assert main([*args, "--max-failure-rate", "1.0"]) == 0
    assert main([*args, "--max-failure-rate", "0.01", "--interval", "exact"]) == 1
    capsys.readouterr()
    # replay by scenario + seed
    seed = doc["failed_seeds"][0]
    assert main(["replay", str(swept), "--seed", str(seed)]) == 1
    assert "state_by[DEGRADED]" in capsys.readouterr().out


def test_bad_sweep_parameter_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sim.cli import main

    data = copy.deepcopy(SWEPT)
    data["sweep"]["params"][0]["path"] = "faults.7.start.at"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    assert main(["sweep", str(p), "--variants", "3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "faults.7.start.at" in err and "Traceback" not in err
    assert main(["sweep", str(p), "--variants", "0"]) == 2
