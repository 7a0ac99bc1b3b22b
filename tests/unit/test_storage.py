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
