"""The application shell: the ``poolbench`` command and the HTTP job service.

It sits above every other package and imports them only when a subcommand runs:

- :mod:`poolbench.cli`: the command table and ``main``
- :mod:`poolbench.commands`: one module per subcommand — its arguments and its ``run``
- :mod:`poolbench.service`: the HTTP job service (``poolbench serve``, ``python -m poolbench.service``)
- :mod:`poolbench.demo`: what ``poolbench demo`` runs

The library (:mod:`pools`) and the harness packages (:mod:`scenarios`,
:mod:`reports`, :mod:`loadtests`) never import this package.
"""
