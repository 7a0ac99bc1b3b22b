"""Before a grid starts on several nodes: can every node read what its trials read?

A path that exists only on the head (a local `tracking.storage`, a `data.root` that
was never copied to the workers) would fail every trial placed elsewhere, one at a
time and late. This asks each node that is up now; nodes an autoscaler adds later
are not asked. URIs (s3://, gs://) are skipped: pyarrow reaches them from any node
with the cloud's credentials.
"""

from __future__ import annotations

import os

from orchestrator.errors import InputError
from orchestrator.storage import is_uri


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
                         f"see README, 'Run on a cluster'")
