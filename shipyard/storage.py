"""Paths and URIs: local files and ``gs://`` objects behind one small interface.

Inside a KFP pod artifacts are local paths (KFP mounts or copies them); user-given inputs such as
the raw data may be ``gs://`` URIs. google-cloud-storage is imported only when one is used. Any
other ``SCHEME://`` (``s3://``, ``https://``, ``file://``, ...) is refused by name with
:class:`UnsupportedSchemeError` rather than looked up as a local path.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from shipyard.errors import StorageError, UnsupportedSchemeError

GCS_SCHEME = "gs://"
#: What :func:`fetch` and :func:`upload` accept, for messages.
SUPPORTED = "a local path or a gs://BUCKET/OBJECT URI"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str | None:
    """The scheme of a ``SCHEME://...`` URI as written (``"gs"``, ``"s3"``), or None for a path."""
    match = _SCHEME.match(uri)
    return match.group(1) if match else None


def check_supported(uri: str, supported: str = SUPPORTED) -> None:
    """Refuses a URI whose scheme is not ``gs://`` (a plain path passes).

    Args:
        uri: A path or URI given by the user.
        supported: What the caller accepts, for the message (e.g. ingest adds ``sklearn:NAME``).

    Raises:
        UnsupportedSchemeError: ``uri`` is ``SCHEME://...`` with a scheme other than ``gs``
            (``GS://`` included: the scheme is matched as written).
    """
    scheme = scheme_of(uri)
    if scheme is not None and not is_gcs(uri):
        raise UnsupportedSchemeError(f"{uri}: the {scheme}:// scheme is not supported; expected {supported}")


def is_gcs(uri: str) -> bool:
    """True for ``gs://bucket/object`` URIs."""
    return uri.startswith(GCS_SCHEME)


def split_gcs(uri: str) -> tuple[str, str]:
    """Splits ``gs://bucket/a/b`` into ``("bucket", "a/b")``.

    Raises:
        StorageError: The URI has no bucket.
    """
    if not is_gcs(uri):
        raise StorageError(f"{uri!r}: not a gs:// URI")
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, blob = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri!r}: expected gs://BUCKET/OBJECT")
    return bucket, blob


def _gcs_client():
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="shipyard", credentials=AnonymousCredentials())
    return storage.Client()


def fetch(uri: str, workdir: str | None = None) -> Path:
    """Returns a local path holding the file at ``uri``, downloading ``gs://`` objects.

    Args:
        uri: A local path or a ``gs://`` URI.
        workdir: Where downloads go (created when missing; a new temp dir when omitted).

    Returns:
        The local path.

    Raises:
        UnsupportedSchemeError: ``uri`` has a scheme other than ``gs://``.
        StorageError: The file does not exist or cannot be downloaded.
    """
    check_supported(uri)
    if is_gcs(uri):
        bucket, blob = split_gcs(uri)
        target = Path(workdir or tempfile.mkdtemp(prefix="shipyard-fetch-")) / Path(blob).name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _gcs_client().bucket(bucket).blob(blob).download_to_filename(str(target))
        except Exception as exc:  # the client raises many unrelated types
            raise StorageError(f"{uri}: cannot download ({exc.__class__.__name__}: {exc})") from exc
        return target
    path = Path(uri).expanduser()
    if not path.exists():
        raise StorageError(f"{uri}: no such file")
    return path


def upload(local: str | os.PathLike[str], uri: str) -> str:
    """Copies a local file to ``uri`` (``gs://`` or a local path) and returns ``uri``.

    Raises:
        UnsupportedSchemeError: ``uri`` has a scheme other than ``gs://``.
        StorageError: The upload fails.
    """
    check_supported(uri)
    if is_gcs(uri):
        bucket, blob = split_gcs(uri)
        try:
            _gcs_client().bucket(bucket).blob(blob).upload_from_filename(str(local))
        except Exception as exc:
            raise StorageError(f"{uri}: cannot upload ({exc.__class__.__name__}: {exc})") from exc
        return uri
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(Path(local).read_bytes())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{uri}: cannot copy from {local} ({exc.strerror or exc})") from exc
    return uri


def list_gcs(prefix: str) -> list[str]:
    """The sorted ``gs://BUCKET/NAME`` of every object whose name starts with ``prefix``'s path.

    Raises:
        StorageError: ``prefix`` is not a ``gs://`` URI, or the listing fails.
    """
    bucket, blob_prefix = split_gcs(prefix)
    try:
        names = [b.name for b in _gcs_client().list_blobs(bucket, prefix=blob_prefix)]
    except Exception as exc:  # the client raises many unrelated types
        raise StorageError(f"{prefix}: cannot list ({exc.__class__.__name__}: {exc})") from exc
    return sorted(f"gs://{bucket}/{n}" for n in names)
