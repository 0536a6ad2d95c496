"""Comparing runs: a real ``tensorboard`` server over a tiny fer-train sweep, read over HTTP.

A two-job multirun (``pseudo_label.strategy.threshold=0.3,0.6``, one student round each) is
served by the venv's ``tensorboard`` on 127.0.0.1 (a free port), as ``make tensorboard``
would serve ``logs/``; the test reads back what the browser would: the runs, the scalar
tags and series, and the HPARAMS tab's experiment and session groups. Only loopback traffic.
"""

from __future__ import annotations

import csv
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlencode
from urllib.request import ProxyHandler, Request, build_opener

import pytest

from tests.helpers.cli import SWEEP_THRESHOLDS

SWEPT = "pseudo_label.strategy.threshold"
VALUES = SWEEP_THRESHOLDS
JOBS: dict[str, float] = {}  # job dir -> threshold, from the session sweep (tb_sweep)
ROUNDS = (0, 1)
# every round run logs its final metrics; training curves only where a fit ran (the
# teacher cache trains round 0 once per sweep, the other job logs its final metrics)
FINAL_TAGS = {"test/macro_f1", "test/f1_fear", "val/best_macro_f1"}
TRAINING_TAGS = {"val/macro_f1", "train/loss"}


def _expected_tags(name: str) -> set[str]:
    return FINAL_TAGS | (TRAINING_TAGS if name.endswith("round_1") else set())


ROUNDS_TAG = "rounds/test_macro_f1"
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
READY_S = 60  # the server must answer with the whole sweep loaded within this

# the test's HTTP requests never go through a proxy: loopback only
_http = build_opener(ProxyHandler({}))


def _round_runs() -> dict[str, tuple[float, int]]:
    """{tensorboard run: (threshold, round)} for the round (= HPARAMS session) runs."""
    return {f"{job}/tensorboard/round_{k}": (v, k) for job, v in JOBS.items() for k in ROUNDS}


def _rounds_runs() -> dict[str, float]:
    return {f"{job}/tensorboard/rounds": v for job, v in JOBS.items()}


@pytest.fixture(scope="module")
def tb_sweep(sweep) -> Path:
    """The session's two-job sweep (tests/conftest.py); fills JOBS with its job dirs."""
    JOBS.update({job.name: value for value, job in sweep.jobs().items()})
    assert sorted(JOBS.values()) == list(VALUES)
    return sweep.dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}" + (f"?{urlencode(params)}" if params else "")
    with _http.open(url, timeout=10) as r:
        return json.load(r)


def _post(base: str, path: str, body: bytes, content_type: str) -> Any:
    request = Request(f"{base}{path}", data=body, headers={"Content-Type": content_type})
    with _http.open(request, timeout=10) as r:
        return json.load(r)


def _post_json(base: str, path: str, body: dict) -> Any:
    """The hparams routes read a JSON-encoded api.proto request from the POST body."""
    return _post(base, path, json.dumps(body).encode(), "application/json")


def _experiment(base: str) -> dict:
    """GetExperimentRequest as the HPARAMS dashboard sends it."""
    return _post_json(
        base, "/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000}
    )


def _session_groups(base: str) -> dict:
    """ListSessionGroupsRequest: every status, the swept hparam and test/macro_f1 as columns."""
    body = {
        "experimentName": "",
        "allowedStatuses": STATUSES,
        "colParams": [
            {"hparam": SWEPT, "order": "ORDER_ASC"},
            {"metric": {"tag": "test/macro_f1", "group": ""}},
        ],
        "startIndex": 0,
        "sliceSize": 100,
    }
    return _post_json(base, "/data/plugin/hparams/session_groups", body)


def _loaded(base: str) -> str | None:
    """None once the whole sweep is served; otherwise what is still missing."""
    runs = set(_get(base, "/data/runs"))
    expected = set(_round_runs()) | set(_rounds_runs())
    if runs != expected:
        return f"runs {sorted(runs)}"
    tags = _get(base, "/data/plugin/scalars/tags")
    for name in _round_runs():
        if not _expected_tags(name).issubset(tags.get(name, {})):
            return f"tags of {name}: {sorted(tags.get(name, {}))}"
    for name in _rounds_runs():
        if ROUNDS_TAG not in tags.get(name, {}):
            return f"tags of {name}: {sorted(tags.get(name, {}))}"
    sessions = _session_groups(base)["totalSize"]
    return None if sessions == len(_round_runs()) else f"{sessions} hparams sessions"


@pytest.fixture(scope="module")
def server(tb_sweep, tmp_path_factory) -> Iterator[str]:
    """``tensorboard --logdir <sweep>`` on 127.0.0.1; yields its base URL once all is loaded."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("tb_server") / "tensorboard.log"
    binary = Path(sys.executable).parent / "tensorboard"
    command = [str(binary), "--logdir", str(tb_sweep), "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_S
        missing: str | None = "no answer"
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"tensorboard exited ({proc.returncode}):\n{_tail(log_path)}")
            try:
                missing = _loaded(base)
            except (URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as e:
                missing = f"no answer ({e})"
            if missing is None:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tensorboard did not serve the sweep within {READY_S} s: {missing}\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def _metrics(sweep: Path, run_name: str) -> dict:
    """round_<k>/metrics.json of a round run ``<job>/tensorboard/round_<k>``."""
    job, _, rnd = run_name.split("/")
    return json.loads((sweep / job / rnd / "metrics.json").read_text())


def _eventually(check: Callable[[], None], timeout: float = 10) -> None:
    """Retry ``check`` (assertions) briefly: the server may still be reading a last event."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_runs_and_scalar_tags(server):
    runs = _get(server, "/data/runs")
    assert sorted(runs) == sorted([*_round_runs(), *_rounds_runs()])
    tags = _get(server, "/data/plugin/scalars/tags")
    for name in _round_runs():
        assert _expected_tags(name).issubset(tags[name]), name
        assert not any(t.startswith("rounds/") for t in tags[name])
    teachers = [n for n in _round_runs() if n.endswith("round_0") and "train/loss" in tags[n]]
    assert len(teachers) == 1  # the sweep trained its teacher once
    for name in _rounds_runs():
        assert ROUNDS_TAG in tags[name] and "rounds/pseudo_added" in tags[name]


def test_scalar_series_read_back(server, tb_sweep):
    # one series per request (GET), as a single-run chart asks for it
    for name in _rounds_runs():
        series = _get(server, "/data/plugin/scalars/scalars", run=name, tag=ROUNDS_TAG)
        assert [step for _, step, _ in series] == list(ROUNDS)
        with open(tb_sweep / name.split("/")[0] / "rounds.csv", newline="") as f:
            table = [float(r["test_macro_f1"]) for r in csv.DictReader(f)]
        values = [value for _, _, value in series]
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
        assert values == pytest.approx(table, rel=1e-6)
    # many runs at once (POST form), as the dashboard's charts ask for them
    runs = list(_round_runs())
    body = urlencode([("tag", "test/macro_f1"), *(("runs", r) for r in runs)]).encode()
    multi = _post(
        server,
        "/data/plugin/scalars/scalars_multirun",
        body,
        "application/x-www-form-urlencoded",
    )
    assert sorted(multi) == sorted(runs)
    for name, series in multi.items():
        assert series, name
        wall, step, value = series[-1]
        assert math.isfinite(wall) and step >= 0 and math.isfinite(value)
        assert value == pytest.approx(_metrics(tb_sweep, name)["test/macro_f1"], rel=1e-6)
    student = next(r for r in runs if r.endswith("round_1"))
    train_loss = _get(server, "/data/plugin/scalars/scalars", run=student, tag="train/loss")
    assert train_loss and all(math.isfinite(v) for _, _, v in train_loss)


def test_hparams_experiment_lists_swept_hparam_and_metrics(server):
    experiment = _experiment(server)
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    assert SWEPT in hparams and hparams[SWEPT]["type"] == "DATA_TYPE_FLOAT64"
    assert {"seed", "study", "model.backbone", "pseudo_label.rounds"} <= set(hparams)
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"test/macro_f1", "val/best_macro_f1", "test/f1_fear"} <= metrics


def _sessions(server: str) -> dict[str, tuple[dict, dict]]:
    """{session (= round run) name: (its session group, the session)}."""
    out = {}
    for group in _session_groups(server)["sessionGroups"]:
        (session,) = group["sessions"]  # no group names are logged: one session per group
        out[session["name"]] = (group, session)
    return out


def test_hparams_session_groups_one_per_round_run(server, tb_sweep):
    def check():
        response = _session_groups(server)
        assert response["totalSize"] == len(_round_runs()) == len(response["sessionGroups"])
        sessions = _sessions(server)
        assert set(sessions) == set(_round_runs())
        for name, (group, session) in sessions.items():
            assert session["status"] == "STATUS_SUCCESS"
            metric = {m["name"]["tag"]: m for m in group["metricValues"]}["test/macro_f1"]
            assert math.isfinite(metric["value"])
            own = _metrics(tb_sweep, name)["test/macro_f1"]
            assert metric["value"] == pytest.approx(own, rel=1e-6), name
        # the swept column, sorted ascending as asked, holds both values
        thresholds = [g["hparams"][SWEPT] for g in response["sessionGroups"]]
        assert thresholds == sorted(thresholds)
        assert sorted(set(thresholds)) == pytest.approx(list(VALUES))
        # students are always trained in their own job
        for name, (value, k) in _round_runs().items():
            if k > 0:
                assert sessions[name][0]["hparams"][SWEPT] == pytest.approx(value), name

    _eventually(check)


def test_hparams_sessions_carry_their_own_jobs_config(server, tb_sweep):
    for name, (group, _) in _sessions(server).items():
        value, _ = _round_runs()[name]
        assert group["hparams"][SWEPT] == pytest.approx(value), name
        assert "paths.output_dir" not in group["hparams"]  # a location would differ per run


def test_hparams_tab_shows_the_swept_hparam_first(server):
    # what the dashboard computes from GetExperiment: hparams sorted with differs=true first
    # (the server already sorts by (not differs, name)), the first 5 displayed by default
    experiment = _experiment(server)
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    assert hparams[SWEPT]["differs"] is True
    interval = hparams[SWEPT].get("domainInterval", {})
    assert (interval.get("minValue"), interval.get("maxValue")) == pytest.approx(VALUES)
    shown = [h["name"] for h in experiment["hparamInfos"][:5]]
    assert SWEPT in shown
    for name in ("seed", "model.backbone", "pseudo_label.rounds"):
        assert hparams[name].get("differs", False) is False
