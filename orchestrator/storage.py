"""Grid storage: a local folder on one machine, shared storage on a cluster.

`tracking.storage` is a path (local, or an NFS mount every node sees) or a URI
pyarrow opens (s3://, gs://, file://). Ray Train writes checkpoints there and
trials on every node read the fold tables from there, so these helpers go
through pyarrow's filesystems: one code path for all three.
"""

from __future__ import annotations

import os

import pandas as pd


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str) -> str:
    """An absolute path (Ray moves workers' working directories) or the URI as given, without a trailing /."""
    return path.rstrip("/") if is_uri(path) else os.path.abspath(path)


def _open(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(resolve(path))


def write_parquet(frame: pd.DataFrame, path: str) -> None:
    import pyarrow
    import pyarrow.parquet

    fs, inner = _open(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pandas(frame, preserve_index=False), inner, filesystem=fs)


def read_parquet(path: str) -> pd.DataFrame:
    import pyarrow.parquet

    fs, inner = _open(path)
    return pyarrow.parquet.read_table(inner, filesystem=fs).to_pandas()


def remove_tree(path: str) -> None:
    """Delete a folder and everything in it; nothing there is fine."""
    import pyarrow.fs

    fs, inner = _open(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(inner)
