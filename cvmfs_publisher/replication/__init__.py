"""Stratum 1 replicas: copy a signed repository, verified, into a directory or a bucket.

- ``source``: the source's trust chain, history tags and reflog, checked before any write;
- ``copier``: the parallel, hash-checked object copy;
- ``snapshot``: one snapshot in upstream's order, manifest last (see its docstring);
- ``gc``: garbage collection of a replica, without keys;
- ``endpoints``: names, locations and keys as a user gives them.

The catalog walk is the engine's shared one (``engine.reachability``). Nothing here prints;
``cli/replicate.py`` reports. See docs/replicas.md.
"""

from __future__ import annotations

from .endpoints import load_master_keys, open_replica, open_source, repository_name
from .gc import ReplicaGcResult, replica_gc
from .snapshot import IS_SNAPSHOTTING, LAST_SNAPSHOT, SnapshotResult, snapshot

__all__ = ["IS_SNAPSHOTTING", "LAST_SNAPSHOT", "ReplicaGcResult", "SnapshotResult",
           "load_master_keys", "open_replica", "open_source", "replica_gc", "repository_name",
           "snapshot"]
