"""Downloaded archives are checked against their published md5/sha256; a mismatch names the file and both hashes
and removes what was fetched, so a retry starts clean."""

import hashlib
from pathlib import Path

import pytest

from datasets.download import Archive, fetch_archives
from datasets.errors import DatasetNotFoundError

CONTENT = b"the archive's bytes"


@pytest.fixture
def fake_download(monkeypatch):
    """download_and_extract_archive that writes CONTENT as the archive and unpacks an empty folder."""

    def download(url, download_root, filename):
        root = Path(download_root)
        (root / filename).write_bytes(CONTENT)
        (root / "unpacked").mkdir()

    monkeypatch.setattr("datasets.download.download_and_extract_archive", download)


def archive(**checksums) -> Archive:
    return Archive("unpacked", "data.tgz", "https://example.org/data.tgz", **checksums)


@pytest.mark.parametrize("checksums", [{}, {"md5": hashlib.md5(CONTENT).hexdigest()},
                                       {"sha256": hashlib.sha256(CONTENT).hexdigest().upper()}],
                         ids=["none recorded", "md5", "sha256"])
def test_matching_or_unrecorded_checksums_pass(fake_download, tmp_path, checksums):
    fetch_archives(tmp_path, [archive(**checksums)], "Data")
    assert (tmp_path / "unpacked").is_dir() and (tmp_path / "data.tgz").read_bytes() == CONTENT


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_a_mismatch_names_file_and_hashes_and_removes_what_was_fetched(fake_download, tmp_path, algorithm):
    expected = "0" * (32 if algorithm == "md5" else 64)
    got = hashlib.new(algorithm, CONTENT).hexdigest()
    with pytest.raises(DatasetNotFoundError) as error:
        fetch_archives(tmp_path, [archive(**{algorithm: expected})], "Data")
    assert f"Data: {tmp_path / 'data.tgz'} from https://example.org/data.tgz" in str(error.value)
    assert f"{algorithm} expected {expected}, got {got}" in str(error.value)
    assert not (tmp_path / "data.tgz").exists() and not (tmp_path / "unpacked").exists()

