"""poolbench reports (see the open issues)."""
