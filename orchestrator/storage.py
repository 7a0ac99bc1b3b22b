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


def write_text(text: str, path: str) -> None:
    fs, inner = _open(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as out:
        out.write(text.encode())


def read_text(path: str) -> str:
    fs, inner = _open(path)
    with fs.open_input_stream(inner) as stream:
        return stream.read().decode()


def remove_tree(path: str) -> None:
    """Delete a folder and everything in it; nothing there is fine."""
    if exists(path):
        fs, inner = _open(path)
        fs.delete_dir(inner)


def exists(path: str) -> bool:
    import pyarrow.fs

    fs, inner = _open(path)
    return fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def subfolders(path: str) -> list[str]:
    """Names of the folders directly inside `path`, sorted; none (or no such folder) is an empty list."""
    import pyarrow.fs

    fs, inner = _open(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.Directory:
        return []
    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner))
    return sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory)


def upload_dir(local: str, dest: str) -> None:
    """Copy a local folder to `dest` (a path or URI), replacing what is there.

    It is written as `<dest>.partial` and then renamed, so a reader that skips
    `.partial` folders never sees half of one (on an object store the rename is a copy).
    """
    import pyarrow.fs

    fs, inner = _open(dest)
    staging = f"{inner}.partial"
    fs.create_dir(staging, recursive=True)
    pyarrow.fs.copy_files(local, staging, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
    remove_tree(dest)
    fs.move(staging, inner)
