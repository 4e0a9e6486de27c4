"""poolbench loadtests (see the open issues)."""
