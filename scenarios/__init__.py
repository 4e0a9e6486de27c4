"""poolbench scenarios (see the open issues)."""
