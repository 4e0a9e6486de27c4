"""``python -m poolbench``: the same as the ``poolbench`` command."""

import sys

from .cli import main

sys.exit(main())
