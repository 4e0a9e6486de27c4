"""``python -m pools.service``: the same as ``poolbench serve``."""

import sys

from . import main

sys.exit(main())
