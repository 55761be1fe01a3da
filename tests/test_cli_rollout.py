"""``shipyard rollout start | status | promote | abort`` on the local backend."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from serving.rollout.local import read_state, take_command


def test_promote_and_abort_leave_a_command_and_status_reads_the_state(cli, tmp_path):
    status = cli("rollout", "status", "--workdir", str(tmp_path))
    assert status.returncode == 1 and "no rollout state" in status.stdout
    sent = cli("rollout", "abort", "--workdir", str(tmp_path))
    assert sent.returncode == 0 and "abort: sent" in sent.stdout
    assert take_command(tmp_path) == "abort" and take_command(tmp_path) is None  # consumed once
    (tmp_path / "state.json").write_text(json.dumps({"phase": "Progressing", "weight": 25}))
    status = cli("rollout", "status", "--workdir", str(tmp_path))
    assert status.returncode == 0 and json.loads(status.stdout) == {"phase": "Progressing", "weight": 25}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["status"], "give either --workdir (local) or --service (kubernetes)"),
        (["status", "--workdir", "w", "--service", "s"], "give either --workdir"),
        (["start", "--workdir", "w", "--policy", "{not json"], "--policy: not JSON"),
        (["start", "--workdir", "w", "--policy", '{"interval_s": -1}'], "interval_s"),
        (["start", "--workdir", "w"], "--stable is required"),
        (["start", "--workdir", "w", "--stable", "nowhere"], "--stable nowhere: not a Model directory"),
        (["start", "--service", "bc"], "--prometheus-url is required"),
    ],
)
def test_usage_errors_are_one_line(cli, tmp_path, args, fragment):
    proc = cli("rollout", *args, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.serving
@pytest.mark.slow
def test_start_walks_the_steps_and_an_operator_promote_ends_it(tmp_path, baseline_artifacts, rollout_tools):
    from shipyard.artifacts import read_dataset

    df, _ = read_dataset(baseline_artifacts["test"])
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": df.drop(columns=["target"]).head(4).to_numpy().tolist()}))
    policy = {"interval_s": 3, "min_requests": 5, "step_weights": [10, 20, 30, 40, 50], "p99_max_s": 2.0}
    policy["p99_max_ratio"] = 20.0
    work = tmp_path / "rollout"
    model = str(baseline_artifacts["baseline"])
    argv = [sys.executable, "-m", "shipyard.cli", "rollout", "start", "--workdir", str(work), "--stable", model]
    argv += ["--canary", model, "--name", "bc", "--policy", json.dumps(policy)]
    argv += ["--load-rate", "30", "--load-body", str(body)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # bounded: until the canary has passed its first step
            state = read_state(work)
            if state and state.get("weight", 0) >= 20:
                break
            time.sleep(0.5)
        sent = subprocess.run(
            [sys.executable, "-m", "shipyard.cli", "rollout", "promote", "--workdir", str(work)],
            capture_output=True,
            text=True,
        )
        assert sent.returncode == 0, sent.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    report = json.loads((work / "rollout.json").read_text())
    assert report["phase"] == "Succeeded"
    assert any(e["event"] == "operator: promote" for e in report["timeline"])
    stepped = [e["weight"] for e in report["timeline"] if e.get("decision", "").startswith("weight")]
    assert stepped[:2] == [10, 20] and max(stepped) < 50  # promoted before the last step
    assert "Succeeded" in out and (work / "rollout.html").is_file()
