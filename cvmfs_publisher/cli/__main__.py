"""``python -m cvmfs_publisher.cli``: the same command as the console script."""

import sys

from . import main

sys.exit(main())
