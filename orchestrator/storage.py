"""Grid storage: a local folder on one machine, shared storage on a cluster.

`tracking.storage` is a path (local, or an NFS mount every node sees) or a URI
pyarrow opens (s3://, gs://, file://). Ray Train writes checkpoints there and
trials on every node read the fold tables from there, so these helpers go
through pyarrow's filesystems: one code path for all of them.

What "a folder" means on each backend is decided here:

- Paths are built with `join`, which keeps a URI's query (pyarrow's own
  `?endpoint_override=...&scheme=http`) at the end of every path.
- An object store has no directories and no rename, so a folder that must appear
  whole (a checkpoint) is committed by `commit_dir`: its files first, then a
  manifest (sizes and SHA-256 of every file) last. A folder without its manifest
  does not exist for readers (`committed`), and `verify` checks a downloaded copy
  against it, so a truncated or half-uploaded checkpoint is found, not loaded.
- Endpoint and credentials come the standard ways: the environment
  (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ..., GOOGLE_APPLICATION_CREDENTIALS), an
  instance profile, or the URI's query; never the grid file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

MANIFEST = "MANIFEST.json"  # a committed folder's last file: {"files": {name: {"size", "sha256"}}}


def is_uri(path: str) -> bool:
    return "://" in path


def _split(path: str) -> tuple[str, str]:
    """(the path part, "?query" or "") of a URI; a local path has no query."""
    if not is_uri(path):
        return path, ""
    head, sep, query = path.partition("?")
    return head, sep + query


def resolve(path: str) -> str:
    """An absolute path (Ray moves workers' working directories) or the URI as given, without a trailing /."""
    if not is_uri(path):
        return os.path.abspath(path)
    head, query = _split(path)
    return head.rstrip("/") + query


def join(base: str, *parts: str) -> str:
    """`base/part/...`, with a URI's query kept at the end: s3://b/p?q + x -> s3://b/p/x?q."""
    head, query = _split(base)
    return "/".join([head.rstrip("/"), *(p.strip("/") for p in parts if p)]) + query


def without_query(path: str) -> str:
    """The path for people: a URI's query (an endpoint, perhaps keys) left out."""
    return _split(path)[0]


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


def remove_file(path: str) -> None:
    """Delete one file; nothing there is fine."""
    if exists(path):
        fs, inner = _open(path)
        fs.delete_file(inner)


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


def tree_bytes(path: str) -> int:
    """The bytes of every file under `path` (0 when there is none)."""
    import pyarrow.fs

    fs, inner = _open(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.Directory:
        return 0
    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner, recursive=True))
    return sum(i.size or 0 for i in infos if i.type == pyarrow.fs.FileType.File)


# ------------------------------------------------------------------ committed folders


def write_manifest(folder: str | Path) -> dict:
    """Write MANIFEST.json into a local folder: the size and SHA-256 of each file there; returns it."""
    folder = Path(folder)
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def verify(folder: str | Path) -> str | None:
    """What is wrong with a local copy of a committed folder, or None when every file matches its manifest."""
    folder = Path(folder)
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        return f"no readable {MANIFEST} ({err})"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["size"]:
            return f"{name} has {path.stat().st_size} bytes, its manifest says {want['size']}"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum"
    return None


def commit_dir(local: str | Path, dest: str) -> None:
    """Copy a local folder to `dest` (a path or URI) without a rename: files first, the manifest last.

    A folder already at `dest` (a retried epoch) is un-committed first (its manifest
    deleted), so no reader takes a mix of two writes for one.
    """
    import pyarrow.fs

    write_manifest(local)
    fs, inner = _open(dest)
    remove_file(join(dest, MANIFEST))
    fs.create_dir(inner, recursive=True)
    files = sorted(p for p in Path(local).iterdir() if p.is_file() and p.name != MANIFEST)
    for path in [*files, Path(local) / MANIFEST]:  # the manifest last: the commit point
        pyarrow.fs.copy_files(str(path), f"{inner}/{path.name}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=fs)


def copy_to_local(path: str, local: str | Path) -> None:
    """The file at `path` (a path or URI) copied to the local file `local`."""
    import pyarrow.fs

    fs, inner = _open(path)
    pyarrow.fs.copy_files(inner, str(local), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())


def committed(path: str) -> bool:
    """Whether the folder at `path` was committed whole (its manifest is there)."""
    return exists(join(path, MANIFEST))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ faults


def is_disk_full(error: BaseException | str) -> bool:
    """Whether an error (or a worker's error text) is "no space left on device", anywhere in its chain."""
    if isinstance(error, str):
        return "No space left on device" in error or "database or disk is full" in error
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or is_disk_full(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes(path: str) -> int | None:
    """Free bytes on the volume holding a local `path` (its nearest existing parent); None for a URI."""
    if is_uri(path) and not path.startswith("file://"):
        return None
    import shutil

    folder = Path(path.removeprefix("file://")).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free
