"""shipyard.storage's ``gs://`` paths (upload, list, fetch) over HTTP against a GCS emulator."""

import pytest

from shipyard import storage
from shipyard.errors import StorageError

pytestmark = pytest.mark.serving


def test_an_uploaded_object_is_listed_and_fetched_back_byte_for_byte(gcs, tmp_path):
    payload = bytes(range(256)) * 40_000  # 10 MB: past the client's single-request upload size
    (tmp_path / "a.bin").write_bytes(payload)
    (tmp_path / "b.txt").write_text("b")
    assert storage.upload(tmp_path / "a.bin", f"{gcs}/run/a.bin") == f"{gcs}/run/a.bin"
    storage.upload(tmp_path / "b.txt", f"{gcs}/run/b.txt")
    storage.upload(tmp_path / "b.txt", f"{gcs}/other/b.txt")
    assert storage.list_gcs(f"{gcs}/run/") == [f"{gcs}/run/a.bin", f"{gcs}/run/b.txt"]
    fetched = storage.fetch(f"{gcs}/run/a.bin", str(tmp_path / "down"))
    assert fetched == tmp_path / "down" / "a.bin" and fetched.read_bytes() == payload


def test_an_upload_overwrites_the_object(gcs, tmp_path):
    for text in ("first", "second"):
        (tmp_path / "x.txt").write_text(text)
        storage.upload(tmp_path / "x.txt", f"{gcs}/x.txt")
    assert storage.fetch(f"{gcs}/x.txt", str(tmp_path / "down")).read_text() == "second"


def test_a_missing_object_or_bucket_is_a_storage_error_naming_the_uri(gcs, tmp_path):
    with pytest.raises(StorageError, match=rf"^{gcs}/nothing-here: cannot download \(NotFound"):
        storage.fetch(f"{gcs}/nothing-here", str(tmp_path))
    with pytest.raises(StorageError, match=r"^gs://no-such-bucket/x: cannot upload \(NotFound"):
        storage.upload(__file__, "gs://no-such-bucket/x")
    assert storage.list_gcs(f"{gcs}/empty/") == []


def test_a_deleted_object_is_gone_and_deleting_it_again_is_not_an_error(gcs, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    storage.upload(tmp_path / "x.txt", f"{gcs}/d/x.txt")
    storage.upload(tmp_path / "x.txt", f"{gcs}/d/y.txt")
    storage.delete(f"{gcs}/d/x.txt")
    storage.delete(f"{gcs}/d/x.txt")
    assert storage.list_gcs(f"{gcs}/d/") == [f"{gcs}/d/y.txt"]
