"""Before a grid starts: can it write its storage, and can every node read what its trials read?

`check_storage` writes, reads back and deletes a small file in `tracking.storage`
before anything else is written there: a bucket that does not exist, refused
credentials, an endpoint that does not answer or a full volume end the run at
once (exit 2 or 3), naming the field and the fix, instead of failing every trial.

A path that exists only on the head (a local `tracking.storage`, a `data.root` that
was never copied to the workers) would fail every trial placed elsewhere, one at a
time and late. `check_shared_paths` asks each node that is up now; nodes an
autoscaler adds later are not asked. URIs (s3://, gs://) are skipped: pyarrow
reaches them from any node with the cloud's credentials.

`check_libraries` asks timm and albumentations about the names a grid gives them
(model names, a list of transforms): the grid's validation does not import them.
"""

from __future__ import annotations

import os
import uuid

from orchestrator import storage
from orchestrator.errors import InputError, OutOfSpace
from orchestrator.storage import is_uri

# what pyarrow's S3/GCS errors say -> what to tell the user
_STORAGE_FAULTS = [
    (("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist", "not found. To create buckets"),
     "the bucket does not exist: create it (e.g. `aws s3 mb s3://BUCKET`) or correct its name"),
    (("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
      "SignatureDoesNotMatch", "Forbidden", "403"),
     ("the credentials were refused: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or the node's "
      "instance profile) to ones that may write there")),
    (("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't resolve", "Connection refused", "timed out"),
     "the endpoint does not answer: check AWS_ENDPOINT_URL, or the URI's ?endpoint_override=HOST:PORT&scheme=http"),
    (("Permission denied", "Read-only file system"), "this user may not write there: choose a folder it can write"),
]


def missing_on_nodes(paths: dict[str, str]) -> dict[str, list[str]]:
    """field -> the nodes ("ip/node id prefix") on which its path does not exist; {} on a one-node cluster."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    local = {field: path for field, path in paths.items() if path and not is_uri(path)}
    if len(nodes) < 2 or not local:
        return {}

    @ray.remote(num_cpus=0, max_retries=0)
    def absent(candidates: dict[str, str]) -> list[str]:
        return [field for field, path in candidates.items() if not os.path.exists(path)]

    asked = {f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}":
             absent.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(local)
             for n in nodes}
    missing: dict[str, list[str]] = {}
    for node, ref in asked.items():
        for field in ray.get(ref, timeout=300):
            missing.setdefault(field, []).append(node)
    return missing


def check_shared_paths(paths: dict[str, str]) -> None:
    """Raise InputError naming each field whose path some node lacks, and how to share it."""
    missing = missing_on_nodes(paths)
    if missing:
        found = "; ".join(f"{field}={paths[field]} does not exist on node(s) {', '.join(nodes)}"
                          for field, nodes in missing.items())
        raise InputError(f"{found}. On a cluster every node reads these: put them on a folder mounted at the same "
                         f"path on every node (NFS), or set tracking.storage to a bucket URI (s3://, gs://); "
                         f"see docs/cluster.md")


def check_storage(path: str, field: str = "tracking.storage") -> None:
    """Write, read back and delete a small file under `path` (the setting `field`); InputError (or OutOfSpace)
    naming `field` if that fails."""
    probe = storage.join(path, f".probe-{uuid.uuid4().hex[:8]}")
    try:
        storage.write_text("probe", probe)
        storage.read_text(probe)
        storage.remove_file(probe)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors are OSErrors with the cloud's codes in their text
        if storage.is_disk_full(err):
            raise OutOfSpace(no_space_on_storage(path, 1)) from None
        text = str(err)
        fix = next((fix for codes, fix in _STORAGE_FAULTS if any(code in text for code in codes)), None)
        raise InputError(f"{field}: cannot write {storage.without_query(path)}: "
                         f"{fix or 'it answered with an error'} ({text.splitlines()[0][:300]})") from None


def no_space_on_storage(root: str, at_once: int) -> str:
    """What a full `tracking.storage` says: where, what is free and held, what a trial needs, and --resume."""
    trials = storage.join(root, "trials")
    sizes = [storage.tree_bytes(storage.join(trials, name)) for name in storage.subfolders(trials)]
    free = storage.free_bytes(root)
    largest = max(sizes, default=0)
    need = (f"A trial's folder holds up to {largest / 1e6:.0f} MB here (its checkpoints and predictions), so "
            f"{at_once} trial(s) at once need about {at_once * largest / 1e6:.0f} MB more; " if largest else "")
    return (f"tracking.storage is full: no space left on device under {storage.without_query(root)}"
            + (f" ({free / 1e6:.1f} MB free)" if free is not None else "")
            + f". The grid stopped; nothing is lost. {need}Free space there (or point tracking.storage at a larger "
            f"volume or a bucket), then run the same command with --resume: ended trials are reused, the others "
            f"continue from their last good checkpoint")


def check_libraries(grid, source: str) -> None:
    """InputError naming the field when timm does not know a model or albumentations refuses a transform,
    in the grid's keys or in any value a search axis over them can take."""
    from orchestrator.data.transforms import check_augment
    from orchestrator.train.models import check_model_name

    def dumped(augment):
        return [t.model_dump() for t in augment] if isinstance(augment, list) else augment

    checks = [(f"models.{i}.name", check_model_name, m.name) for i, m in enumerate(grid.models)]
    checks.append(("train.augment", check_augment, dumped(grid.train.augment)))
    by_path = {"model.name": check_model_name, "train.augment": check_augment}
    checks += [(f"search.{path}", by_path[path], value) for path, axis in grid.search.items() if path in by_path
               for value in axis.extremes()]
    for field, check, value in checks:
        try:
            check(value)
        except ValueError as err:
            problem = f"the value {value!r} is refused ({err})" if field.startswith("search.") else f"{err} (got {value!r})"
            raise InputError(f"invalid config:\n  {field}: {problem}", source=source) from None
