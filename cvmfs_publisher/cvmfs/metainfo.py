"""Repository meta-information, the ``M`` object (spec 8): the JSON ``cvmfs_server`` seeds."""

from __future__ import annotations

import json


def default_metainfo(fqrn: str, stratum0_url: str = "") -> bytes:
    """Same keys as upstream's ``create_repometa_skeleton``, filled where we know better."""
    document = {
        "administrator": "",
        "email": "",
        "organisation": "",
        "description": f"CernVM-FS repository {fqrn}",
        "url": "",
        "recommended-stratum0": stratum0_url,
        "recommended-stratum1s": [],
        "custom": {"_comment": "written by cvmfs-publisher"},
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")
