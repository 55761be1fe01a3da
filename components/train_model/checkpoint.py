"""Training checkpoints that survive a killed process: atomic, verified, newest-complete-first.

A checkpoint is one file ``ckpt-<step>.pt`` in a directory (a local path, a mounted PVC) or under
a ``gs://`` prefix. Its bytes are a fixed header (magic, payload length, sha256 of the payload)
and the payload: a ``torch.save`` of plain tensors, numbers, strings, lists and dicts, so it loads
with ``weights_only=True``. A local checkpoint is written to a temporary file in the same
directory, flushed and fsynced, then renamed over its final name and the directory fsynced: a
reader sees a complete file or none. A ``gs://`` object is uploaded whole (GCS makes an object
visible only once complete). Either way the header is checked on load, so a truncated or altered
file (a storage without atomic rename, a disk fault) is skipped with a warning and the previous
checkpoint used. The newest ``keep`` checkpoints are kept, older ones deleted after a new one is
complete. Only one job writes to a store at a time (a retried step starts after the
failed one ended); the unfinished temporary file of a killed writer is removed on the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard import storage
from shipyard.errors import StorageError

MAGIC = b"SHIPYARD-CKPT-1\n"
_HEADER = struct.Struct(">Q32s")  # payload length, sha256 of the payload
_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")
#: Test hook: seconds to pause half-way through writing a checkpoint (to kill a writer there).
STALL_ENV = "SHIPYARD_CHECKPOINT_STALL_S"


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint taken after global step ``step``."""
    return f"ckpt-{step:012d}.pt"


def encode(state: dict[str, Any]) -> bytes:
    """The checkpoint file's bytes for ``state``: header + ``torch.save`` payload."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return MAGIC + _HEADER.pack(len(payload), hashlib.sha256(payload).digest()) + payload


def decode(blob: bytes, where: str) -> dict[str, Any]:
    """The state in a checkpoint file's bytes.

    Raises:
        StorageError: Wrong magic, a truncated payload or a sha256 that does not match.
    """
    import torch

    start = len(MAGIC) + _HEADER.size
    if len(blob) < start or not blob.startswith(MAGIC):
        raise StorageError(f"{where}: not a Shipyard checkpoint (no header; {len(blob)} bytes)")
    length, digest = _HEADER.unpack(blob[len(MAGIC) : start])
    payload = blob[start:]
    if len(payload) != length:
        raise StorageError(f"{where}: truncated checkpoint ({len(payload)} of {length} payload bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise StorageError(f"{where}: checkpoint sha256 does not match its header")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


class CheckpointStore:
    """The checkpoints of one training job under ``uri`` (a directory or a ``gs://`` prefix).

    Args:
        uri: Where the checkpoints live; created when missing.
        keep: How many complete checkpoints to keep (the newest).
    """

    def __init__(self, uri: str, keep: int = 2):
        storage.check_supported(uri)
        self.uri = uri.rstrip("/")
        self.keep = max(1, keep)
        self.gcs = storage.is_gcs(uri)
        if not self.gcs:
            try:
                Path(self.uri).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{uri}: cannot create the checkpoint directory ({exc.strerror or exc})") from exc
            for torn in Path(self.uri).glob(".ckpt-*.tmp"):  # a writer killed before its rename
                print(f"train: removing the unfinished checkpoint {torn}", file=sys.stderr, flush=True)
                torn.unlink(missing_ok=True)

    def _names(self) -> list[str]:
        """Checkpoint file names, newest first."""
        if self.gcs:
            names = [u.rsplit("/", 1)[-1] for u in storage.list_gcs(self.uri + "/")]
        else:
            names = [p.name for p in Path(self.uri).iterdir()]
        return sorted((n for n in names if _NAME.match(n)), reverse=True)

    def _read(self, name: str) -> bytes:
        if self.gcs:
            with tempfile.TemporaryDirectory(prefix="shipyard-ckpt-") as tmp:
                return storage.fetch(f"{self.uri}/{name}", tmp).read_bytes()
        return (Path(self.uri) / name).read_bytes()

    def save(self, step: int, state: dict[str, Any]) -> str:
        """Writes the checkpoint of global step ``step`` atomically; returns its URI."""
        blob = encode(state)
        name = checkpoint_name(step)
        if self.gcs:
            with tempfile.TemporaryDirectory(prefix="shipyard-ckpt-") as tmp:
                local = Path(tmp) / name
                local.write_bytes(blob)
                storage.upload(local, f"{self.uri}/{name}")
        else:
            _write_atomic(Path(self.uri) / name, blob)
        self._prune()
        return f"{self.uri}/{name}"

    def _prune(self) -> None:
        for old in self._names()[self.keep :]:
            self._delete(old)

    def _delete(self, name: str) -> None:
        storage.delete(f"{self.uri}/{name}")

    def clear(self) -> None:
        """Removes every checkpoint (and a local directory left empty): the step that wrote them
        has succeeded, so no retry will resume, and a later run must train, not find it done."""
        for name in self._names():
            self._delete(name)
        if not self.gcs:
            with contextlib.suppress(OSError):
                Path(self.uri).rmdir()

    def latest(self) -> tuple[str, dict[str, Any]] | None:
        """The newest checkpoint that is complete and intact, as ``(uri, state)``, or None.

        A damaged one is skipped with a warning on stderr (and left in place for a person to see).
        """
        for name in self._names():
            where = f"{self.uri}/{name}"
            try:
                return where, decode(self._read(name), where)
            except (StorageError, OSError, RuntimeError) as exc:
                print(f"train: skipping checkpoint {where}: {exc}", file=sys.stderr, flush=True)
        return None


def _write_atomic(target: Path, blob: bytes) -> None:
    """Temp file in the same directory + flush + fsync + rename + fsync of the directory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            half = len(blob) // 2
            f.write(blob[:half])
            stall = float(os.environ.get(STALL_ENV) or 0)
            if stall > 0:
                f.flush()
                time.sleep(stall)
            f.write(blob[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
