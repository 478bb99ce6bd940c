"""Registry images into flat CVMFS trees laid out like /cvmfs/unpacked.cern.ch.

Entry points (for the CLI): ``unpacker.runs.run_unpack`` (one sync or a loop over a
wishlist and/or images), ``unpacker.runs.run_gc`` (``unpack-gc --grace 7d``),
``unpacker.runs.run_docker_unpack`` (``--from-docker``). Everything is published through a
``cvmfs_publisher.publisher.Publisher``, so every backend works. Modules, bottom up:
``reference`` (image names), ``manifests`` (OCI/Docker manifests, platforms),
``registry`` (HTTP, auth, retries, verified blobs), ``layers`` (decompress + diff_id),
``flatten`` (whiteouts, links, hostile members -> entry stream), ``images`` (resolve and
unpack one image), ``layout`` / ``state`` (paths and metadata), ``sync`` (batched
sessions), ``retire`` (``unpack-gc``), ``wishlist``, ``docker_source``.
"""
