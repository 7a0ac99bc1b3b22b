"""Grid storage helpers: the same calls for a local folder and a URI (file:// here; s3:// and gs:// alike)."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator import storage


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_parquet_round_trip_and_remove(tmp_path, as_uri):
    base = (tmp_path / "store").as_uri() if as_uri else str(tmp_path / "store")
    frame = pd.DataFrame({"row_id": [0, 1], "image_path": ["a.png", "b.png"], "fold": [1, 0]})
    storage.write_parquet(frame, f"{base}/grid/data/folds.parquet")  # creates the folders
    assert (tmp_path / "store" / "grid" / "data" / "folds.parquet").is_file()
    pd.testing.assert_frame_equal(storage.read_parquet(f"{base}/grid/data/folds.parquet"), frame)
    storage.remove_tree(f"{base}/grid")
    assert not (tmp_path / "store" / "grid").exists()
    storage.remove_tree(f"{base}/grid")  # already gone: fine


def test_resolve_keeps_uris_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("s3://bucket/ray_results/") == "s3://bucket/ray_results"
    assert storage.resolve("./ray_results") == str(tmp_path / "ray_results")


def test_paths_keep_a_uris_query_at_the_end():
    from orchestrator.layout import GridLayout

    uri = "s3://bucket/runs/?endpoint_override=http://127.0.0.1:9000&scheme=http"
    layout = GridLayout.of(uri, "sketch")
    query = "?endpoint_override=http://127.0.0.1:9000&scheme=http"
    assert layout.folds_table == f"s3://bucket/runs/sketch/data/folds.parquet{query}"
    assert layout.checkpoint("abc-f0", 3) == f"s3://bucket/runs/sketch/trials/abc-f0/epoch_0003{query}"
    assert storage.join(layout.trial_dir("k"), "predictions", "oof.parquet").endswith(f"/k/predictions/oof.parquet{query}")
    assert storage.without_query(layout.tune) == "s3://bucket/runs/sketch/tune"
    assert storage.join("/data/a?b", "c") == "/data/a?b/c"  # a local path has no query


def test_a_committed_folder_is_verified_against_its_manifest(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "model.pt").write_bytes(b"x" * 1000)
    dest = (tmp_path / "store" / "epoch_0001").as_uri()
    assert not storage.committed(dest)
    storage.commit_dir(local, dest)
    assert storage.committed(dest) and storage.verify(tmp_path / "store" / "epoch_0001") is None
    (tmp_path / "store" / "epoch_0001" / "model.pt").write_bytes(b"x" * 10)
    assert storage.verify(tmp_path / "store" / "epoch_0001") == "model.pt has 10 bytes, its manifest says 1000"


def test_a_full_disk_is_recognised_in_an_error_chain_and_in_a_workers_text():
    import errno

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/mnt/full/x")
        except OSError as inner:
            raise RuntimeError("checkpoint upload failed") from inner
    except RuntimeError as outer:
        assert storage.is_disk_full(outer)
    assert storage.is_disk_full("Traceback ...\nOSError: [Errno 28] No space left on device")
    assert not storage.is_disk_full(ValueError("bad"))


def test_a_full_disk_outside_the_grid_storage_is_exit_3_naming_the_file(tmp_path, capsys):
    import errno

    from orchestrator.cli import EXIT_NO_SPACE, main_guard

    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "images" / "cache.npy"))

    assert main_guard(main) == EXIT_NO_SPACE
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on device (writing {tmp_path}/images/cache.npy: ") and "MB free there" in err
    assert "ORCHESTRATOR_CACHE" in err and "Traceback" not in err
