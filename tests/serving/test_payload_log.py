"""Payload logging with real files on disk; ``gs://`` only as far as it runs without GCS."""

from __future__ import annotations

import calendar
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving import payload_log
from serving.payload_log import FILE_NAME, PayloadLogger, read_payloads
from shipyard import storage
from shipyard.errors import ArtifactError, ConfigError, StorageError

MODEL = "bc"
FEATURES = ["a", "b", "c"]
WAIT = 10.0  # upper bound of every poll; polls return as soon as their condition holds


def make_record(i: int, inputs: Any) -> dict[str, Any]:
    inputs = np.asarray(inputs, dtype=np.float64)
    return {
        "ts": 1_700_000_000.0 + i,
        "model": MODEL,
        "protocol": "v2" if i % 2 else "v1",
        "id": f"req-{i}",
        "features": FEATURES,
        "inputs": inputs,
        "outputs": {"predictions": np.arange(len(inputs)) % 2, "probabilities": np.full((len(inputs), 2), 0.5)},
    }


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT} s waiting for {what}")
        time.sleep(0.005)


def finished(root: Path) -> list[Path]:
    return sorted((root / MODEL).glob("*.jsonl"))


def strict_json(line: str) -> Any:
    """json.loads that refuses NaN/Infinity, which the stdlib parser would otherwise accept."""

    def refuse(constant: str) -> None:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(line, parse_constant=refuse)


def lines_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name} does not end with a newline"
    return text.splitlines()


@pytest.fixture
def pause(monkeypatch):
    """Makes PayloadLogger.<method> wait until released; yields (entered, release) events."""
    events: dict[str, threading.Event] = {}

    def install(method: str) -> tuple[threading.Event, threading.Event]:
        entered, release = threading.Event(), threading.Event()
        original = getattr(PayloadLogger, method)

        def paused(self, *args):
            entered.set()
            release.wait(WAIT)
            return original(self, *args)

        monkeypatch.setattr(PayloadLogger, method, paused)
        events["release"] = release
        return entered, release

    yield install
    if "release" in events:  # never leave a writer thread stuck when a test fails
        events["release"].set()


def test_round_trip_of_a_few_hundred_records(tmp_path):
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(int(rng.integers(1, 4)), len(FEATURES))) for _ in range(300)]
    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=64, flush_seconds=3600)
    for i, x in enumerate(batches):
        logger.log(make_record(i, x))
    logger.close()

    assert (logger.written, logger.dropped, logger.failed) == (300, 0, 0)
    frame = read_payloads(str(tmp_path), MODEL)
    expected = pd.DataFrame(np.vstack(batches), columns=FEATURES)
    pd.testing.assert_frame_equal(frame, expected)

    # Only finished names, every line one complete JSON object, records as logged.
    assert sorted(p.name for p in (tmp_path / MODEL).iterdir()) == [p.name for p in finished(tmp_path)]
    assert all(FILE_NAME.match(p.name) for p in finished(tmp_path))
    records = [strict_json(line) for p in finished(tmp_path) for line in lines_of(p)]
    assert len(finished(tmp_path)) == 5  # 300 records, 64 per file
    assert [r["id"] for r in records] == [f"req-{i}" for i in range(300)]
    assert records[7] == {
        "ts": 1_700_000_007.0,
        "model": MODEL,
        "protocol": "v2",
        "id": "req-7",
        "features": FEATURES,
        "inputs": batches[7].tolist(),
        "outputs": {
            "predictions": (np.arange(len(batches[7])) % 2).tolist(),
            "probabilities": [[0.5, 0.5]] * len(batches[7]),
        },
    }


def test_file_names_say_when_who_and_which(tmp_path):
    before = int(time.time())
    with PayloadLogger(str(tmp_path), MODEL) as logger:
        logger.log(make_record(0, [[1, 2, 3]]))
    after = time.time()
    (path,) = finished(tmp_path)
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{os.getpid()}-\d+\.jsonl", path.name)
    written_at = calendar.timegm(time.strptime(path.name[:15], "%Y%m%d-%H%M%S"))  # the name is UTC
    assert before - 1 <= written_at <= after + 1  # gmtime() and time() may disagree by a second at a tick


def test_flushes_when_flush_rows_are_pending(tmp_path):
    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=10, flush_seconds=3600)
    for i in range(25):
        logger.log(make_record(i, [[i, i, i]]))
    # the count follows the file's rename, so wait for both
    wait_for(lambda: len(finished(tmp_path)) == 2 and logger.written == 20, "two files of 10 rows before close()")
    logger.close()
    assert [len(lines_of(p)) for p in finished(tmp_path)] == [10, 10, 5]


class FrozenClock:
    """payload_log's ``time`` module, with a monotonic clock that moves only when the test moves it.

    The writer decides when ``flush_seconds`` have passed by this clock, so which records share a
    file does not depend on how the threads were scheduled; the rest of ``time`` is the real one.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_flushes_flush_seconds_after_the_first_pending_record(tmp_path, monkeypatch):
    clock = FrozenClock()
    monkeypatch.setattr(payload_log, "time", clock)

    def as_time_passes(condition):  # each poll moves the writer's clock on by flush_seconds
        def poll() -> bool:
            clock.now += 0.05
            return condition()

        return poll

    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=1000, flush_seconds=0.05)
    try:
        for i in range(3):
            logger.log(make_record(i, [[i, i, i]]))
        wait_for(logger._queue.empty, "the writer to take the records")
        assert finished(tmp_path) == [] and logger.written == 0, "written before flush_seconds passed"
        wait_for(
            as_time_passes(lambda: len(finished(tmp_path)) == 1 and logger.written == 3),
            "a file flush_seconds after the first record",
        )
        logger.log(make_record(3, [[3, 3, 3]]))
        wait_for(logger._queue.empty, "the writer to take the later record")
        assert len(finished(tmp_path)) == 1 and logger.written == 3
        wait_for(as_time_passes(lambda: len(finished(tmp_path)) == 2), "a second file for a later record")
        assert [len(lines_of(p)) for p in finished(tmp_path)] == [3, 1]
    finally:
        logger.close()


def test_full_queue_drops_and_counts_and_never_blocks(tmp_path, pause):
    entered, release = pause("_flush")
    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=1, max_queue=5)
    logger.log(make_record(0, [[0, 0, 0]]))
    assert entered.wait(WAIT), "the writer never started a flush"
    # The writer is now stuck in its flush: 5 records fit in the queue, 15 must be dropped.
    # log() runs in a helper thread so that a blocking log() fails this test instead of hanging it.
    caller = threading.Thread(target=lambda: [logger.log(make_record(i, [[i, i, i]])) for i in range(1, 21)])
    caller.start()
    caller.join(WAIT)
    assert not caller.is_alive(), "log() blocked on a full queue"
    assert logger.dropped == 15
    release.set()
    logger.close()
    assert (logger.written, logger.dropped, logger.failed) == (6, 15, 0)
    assert read_payloads(str(tmp_path), MODEL)["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_nan_and_inf_are_written_as_null(tmp_path):
    record = make_record(0, [[np.nan, 1.5, np.inf]])
    record["outputs"] = {"predictions": np.array([1]), "probabilities": [[np.float32("nan"), np.float32(0.5)]]}
    record["score"] = float("-inf")
    with PayloadLogger(str(tmp_path), MODEL) as logger:
        logger.log(record)
    (path,) = finished(tmp_path)
    (line,) = lines_of(path)
    assert "NaN" not in line and "Infinity" not in line
    written = strict_json(line)
    assert written["inputs"] == [[None, 1.5, None]]
    assert written["outputs"] == {"predictions": [1], "probabilities": [[None, 0.5]]}
    assert written["score"] is None
    frame = read_payloads(str(tmp_path), MODEL)
    assert frame.dtypes.tolist() == [np.float64] * 3
    assert frame["a"].isna().all() and frame["b"].tolist() == [1.5] and frame["c"].isna().all()


def test_a_file_is_visible_only_when_complete(tmp_path, pause):
    entered, release = pause("_publish")
    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=3, flush_seconds=3600)
    for i in range(3):
        logger.log(make_record(i, [[i, i, i]]))
    assert entered.wait(WAIT), "the writer never published a file"
    # Written but not yet published: a hidden temp file with all 3 lines, no .jsonl, nothing to read.
    (tmp,) = (tmp_path / MODEL).iterdir()
    assert tmp.name.startswith(".") and not tmp.name.endswith(".jsonl")
    assert len(lines_of(tmp)) == 3
    assert finished(tmp_path) == []
    assert read_payloads(str(tmp_path), MODEL).empty
    release.set()
    logger.close()
    assert sorted(p.name for p in (tmp_path / MODEL).iterdir()) == [p.name for p in finished(tmp_path)]
    assert len(read_payloads(str(tmp_path), MODEL)) == 3


def test_writer_errors_are_counted_and_the_writer_lives_on(tmp_path, monkeypatch, caplog):
    original = PayloadLogger._publish
    calls = []

    def fail_once(self, tmp, name):
        calls.append(name)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return original(self, tmp, name)

    monkeypatch.setattr(PayloadLogger, "_publish", fail_once)
    logger = PayloadLogger(str(tmp_path), MODEL, flush_rows=2, flush_seconds=3600)
    logger.log(make_record(0, [[0, 0, 0]]))
    logger.log(make_record(1, [[1, 1, 1]]))
    wait_for(lambda: logger.failed == 2, "the failed write to be counted")
    assert logger._thread.is_alive()
    logger.log(make_record(2, [[2, 2, 2]]))
    logger.log({"features": FEATURES, "inputs": [[3, 3, 3]], "outputs": object()})  # not serializable
    logger.log(make_record(4, [[4, 4, 4]]))
    logger.close()
    assert (logger.written, logger.failed, logger.dropped) == (2, 3, 0)
    assert read_payloads(str(tmp_path), MODEL)["a"].tolist() == [2.0, 4.0]
    assert sorted(p.name for p in (tmp_path / MODEL).iterdir()) == [p.name for p in finished(tmp_path)]  # no temp left
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "No space left on device" in messages and "not JSON-serializable" in messages


def test_close_is_idempotent_and_later_records_are_dropped(tmp_path):
    logger = PayloadLogger(str(tmp_path), MODEL)
    assert logger._thread.daemon
    logger.log(make_record(0, [[0, 0, 0]]))
    logger.close()
    logger.close()
    assert not logger._thread.is_alive()
    assert (logger.written, logger.dropped) == (1, 0)
    logger.log(make_record(1, [[1, 1, 1]]))
    logger.close(timeout=0)
    assert (logger.written, logger.dropped) == (1, 1)
    assert len(finished(tmp_path)) == 1


def test_creates_a_missing_directory(tmp_path):
    destination = tmp_path / "not" / "yet"
    PayloadLogger(str(destination), MODEL).close()
    assert (destination / MODEL).is_dir()
    assert list((destination / MODEL).iterdir()) == []  # the writability probe leaves nothing behind


@pytest.mark.parametrize(
    "make_destination, complaint",
    [
        pytest.param(lambda f: str(f), "is not a directory", id="regular-file"),
        pytest.param(lambda f: str(f / "sub"), "cannot write", id="under-a-regular-file"),
        pytest.param(lambda f: "s3://bucket/payloads", "unsupported scheme", id="s3"),
        pytest.param(lambda f: "https://example.com/payloads", "unsupported scheme", id="https"),
        pytest.param(lambda f: "gs://", "no bucket", id="gs-without-bucket"),
        pytest.param(lambda f: "", "empty", id="empty"),
    ],
)
def test_bad_destination_is_a_config_error(tmp_path, make_destination, complaint):
    regular_file = tmp_path / "file.txt"
    regular_file.write_text("x")
    destination = make_destination(regular_file)
    with pytest.raises(ConfigError) as info:
        PayloadLogger(destination, MODEL)
    message = str(info.value)
    assert repr(destination) in message and complaint in message
    assert "expected a local directory or gs://BUCKET/PREFIX" in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only directories")
def test_unwritable_directory_is_a_config_error(tmp_path):
    (tmp_path / MODEL).mkdir()
    (tmp_path / MODEL).chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="cannot write"):
            PayloadLogger(str(tmp_path), MODEL)
    finally:
        (tmp_path / MODEL).chmod(0o700)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_name": ""},
        {"model_name": "a/b"},
        {"model_name": ".."},
        {"flush_rows": 0},
        {"flush_seconds": 0},
        {"max_queue": -1},
    ],
)
def test_bad_parameters_are_config_errors(tmp_path, kwargs):
    args = {"destination": str(tmp_path), "model_name": MODEL} | kwargs
    with pytest.raises(ConfigError):
        PayloadLogger(**args)


@pytest.mark.parametrize(
    "bad_line, complaint",
    [
        ('{"features": ["a", "b", "c"], "inputs": [[1, 2', "not valid JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('{"features": ["a", "b", "c"], "inputs": [[1, 2]]}', "'inputs'"),
        ('{"features": "abc", "inputs": [[1, 2, 3]]}', "'features'"),
    ],
)
def test_malformed_line_is_an_artifact_error_naming_file_and_line(tmp_path, bad_line, complaint):
    directory = tmp_path / MODEL
    directory.mkdir()
    good = json.dumps({"features": FEATURES, "inputs": [[1, 2, 3]]})
    path = directory / "20240101-000000-1-000000.jsonl"
    path.write_text(f"{good}\n{bad_line}\n")
    with pytest.raises(ArtifactError) as info:
        read_payloads(str(tmp_path), MODEL)
    assert f"{path}, line 2" in str(info.value) and complaint in str(info.value)


def test_reader_skips_unfinished_files_and_rows_without_inputs_and_unions_features(tmp_path):
    directory = tmp_path / MODEL
    directory.mkdir()
    (directory / ".20240101-000000-1-000001.jsonl.tmp").write_text("half a line")
    (directory / "notes.txt").write_text("not a payload")
    (directory / "20240101-000000-1-000000.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"features": ["a", "b"], "inputs": [[1, 2], [3, None]]},
                {"features": ["a", "b"], "inputs": None, "outputs": {"error": "bad payload"}},
                {"features": ["b", "c"], "inputs": [[5, 6]]},
            ]
        )
        + "\n"
    )
    frame = read_payloads(str(tmp_path), MODEL)
    expected = pd.DataFrame({"a": [1.0, 3.0, np.nan], "b": [2.0, np.nan, 5.0], "c": [np.nan, np.nan, 6.0]})
    pd.testing.assert_frame_equal(frame, expected)


def test_reader_needs_an_existing_local_directory(tmp_path):
    with pytest.raises(StorageError, match="no payload directory"):
        read_payloads(str(tmp_path / "missing"), MODEL)


# --- gs:// ------------------------------------------------------------------------------------------
# Over HTTP against the GCS emulator on 127.0.0.1 (fixture gcs): names, staging, complete uploads,
# listing and reading back, and a failed upload.


@pytest.mark.serving
def test_gcs_destination_stages_locally_and_uploads_finished_files(gcs):
    logger = PayloadLogger(f"{gcs}/payloads/", MODEL, flush_rows=4, flush_seconds=3600)
    staging = logger._dir
    for i in range(4):
        logger.log(make_record(i, [[i, i, i]]))
    wait_for(lambda: logger.written == 4, "the first upload")
    assert list(staging.iterdir()) == []  # an uploaded file does not stay staged until close()
    for i in range(4, 10):
        logger.log(make_record(i, [[i, i, i]]))
    logger.close()
    assert (logger.written, logger.failed) == (10, 0)
    uploaded = storage.list_gcs(f"{gcs}/payloads/")
    assert len(uploaded) == 3
    for uri in uploaded:
        assert re.fullmatch(rf"{gcs}/payloads/{MODEL}/\d{{8}}-\d{{6}}-{os.getpid()}-\d+\.jsonl", uri)
    assert not staging.exists()  # the staging directory is removed at close
    frame = read_payloads(f"{gcs}/payloads", MODEL)
    assert frame["a"].tolist() == [float(i) for i in range(10)]
    storage.upload(__file__, f"{gcs}/payloads/{MODEL}/.unfinished.jsonl.tmp")  # not a finished file's name
    assert len(read_payloads(f"{gcs}/payloads", MODEL)) == 10


@pytest.mark.serving
def test_gcs_upload_failure_is_counted_and_cleaned_up(gcs, caplog):
    logger = PayloadLogger("gs://no-such-bucket", MODEL, flush_rows=2)  # the emulator answers 404
    staging = logger._dir
    for i in range(2):
        logger.log(make_record(i, [[i, i, i]]))
    wait_for(lambda: logger.failed == 2, "the failed upload to be counted")
    assert list(staging.iterdir()) == []  # the staged file is not left behind
    logger.close()
    assert (logger.written, logger.failed) == (0, 2)
    assert "cannot write 2 records" in caplog.text and "NotFound" in caplog.text
