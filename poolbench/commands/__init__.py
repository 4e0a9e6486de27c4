"""One module per ``poolbench`` subcommand, named in :data:`poolbench.cli.COMMANDS`.

Each defines ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status),
and ``DESCRIPTION`` when its ``--help`` says more than the table's summary line. It
is imported only when its subcommand runs, to build its parser, so what it needs
beyond argparse it imports inside ``run``: building a parser stays fast, and imports
no web framework, plotting or load-generation library.
"""
