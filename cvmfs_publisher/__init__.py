"""cvmfs-publisher: transactional, signed publishing to CernVM-FS repositories."""

__version__ = "0.1.0"
