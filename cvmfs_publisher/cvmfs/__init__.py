"""The CVMFS on-disk format: pure functions over bytes and SQLite files (docs: shared spec)."""
