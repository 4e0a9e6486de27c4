"""``python -m poolbench.service``: the same as ``poolbench serve``."""

import sys

from poolbench.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
