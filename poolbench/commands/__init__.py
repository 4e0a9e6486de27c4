"""One module per ``poolbench`` subcommand, named in :data:`poolbench.cli.COMMANDS`.

Each defines ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status),
and ``DESCRIPTION`` when its ``--help`` says more than the table's summary line. It
is imported only when its subcommand runs, to build its parser; the heavy parts (the
web framework, pandas and matplotlib, the measurement itself) it imports inside
``run``, so that ``poolbench COMMAND --help`` stays fast.
"""
