"""A repository in an S3 bucket, laid out exactly as ``cvmfs_server``'s S3 uploader writes it.

Modules, by concern: ``settings`` (``S3Settings``, s3:// URLs), ``client`` (credentials
and the boto3 client), ``storage`` (``S3Storage``: get, put, list, delete, the manifest
switch), ``direct_put`` (object PUTs without boto3's per-call cost), ``lease`` (the publish
lock), ``boto_errors`` (botocore failures to one-line messages), ``probe`` (does the server
honour conditional writes?). Code above the storage
layer opens buckets through ``cvmfs_publisher.storage.open_storage``; these names stay
importable from here for tests, benchmarks and tools.
"""

from __future__ import annotations

from .client import make_client
from .lease import LEASE, LeaseState
from .probe import ConditionalWriteSupport, probe_conditional_writes
from .settings import S3Settings, parse_s3_url
from .storage import S3Storage

__all__ = ["LEASE", "ConditionalWriteSupport", "LeaseState", "S3Settings", "S3Storage",
           "make_client", "parse_s3_url", "probe_conditional_writes"]
