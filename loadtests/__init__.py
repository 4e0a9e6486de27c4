"""Load tests of the HTTP job service: locust, headless, in processes of its own.

- :mod:`loadtests.profiles`: the job mix and the user shapes (shared with the locustfile)
- :mod:`loadtests.locustfile`: what a locust user does (run by locust, never imported here)
- :mod:`loadtests.config`: ``LoadTest``, one load test as a frozen value
- :mod:`loadtests.orchestrator`: runs one: the service, the locust master and workers, the summary
- :mod:`loadtests.processes`: those child processes, their deadlines and CPU time
- :mod:`loadtests.results`: locust's CSVs and the ``/metrics`` scrape read back; ``summary.json``

Imports :mod:`scenarios` (the job types, to check a mix) and :mod:`pools`, never the
application shell: the service is started as ``python -m poolbench.service``.
"""
