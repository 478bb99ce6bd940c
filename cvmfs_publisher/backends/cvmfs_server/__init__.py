"""The classic backend: publishing through upstream ``cvmfs_server`` on this host.

``driver`` (the Publisher), ``session`` (staging and the transaction), ``command``
(running ``cvmfs_server``), ``tree_writer`` (writing into ``/cvmfs/<fqrn>`` without
following symlinks), ``view`` (the published revision), ``spool`` (staged content).
"""

from .driver import CvmfsServerPublisher, TransactionLeftOpen

__all__ = ["CvmfsServerPublisher", "TransactionLeftOpen"]
