"""The HTTP job service: one pool of any backend behind ``POST/GET/DELETE /jobs``.

Clients name a job type from :mod:`scenarios.jobtypes` and give its parameters as
data — never code. The options are one frozen value in :mod:`.config`; the app in
:mod:`.app`; the bounded record of jobs in :mod:`.store`; the Prometheus metrics in
:mod:`.metrics`; the server and its SIGTERM drain in :mod:`.server`. Run it with
``poolbench serve`` or ``python -m poolbench.service`` (its arguments are in
:mod:`poolbench.commands.serve`). Importing this package imports no web framework.
"""
