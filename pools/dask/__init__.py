"""The "dask" backend: plain callables on a Dask distributed cluster (``DaskBackend``).

Three parts, along where each runs:

- ``_client``: ``DaskBackend``, in the pool's process — an asynchronous Dask
  ``Client`` on the backend's own loop thread sends the pool's jobs to the cluster,
  several in one task when more jobs wait than the cluster has threads, and reports
  each job's outcome to the pool's dispatcher (the data flow is drawn there);
- ``_worker``: what runs on the Dask workers — ``run_pack`` runs a task's jobs in
  order and pushes each outcome (``pools.remote``) to the pool through the scheduler;
  ``stop_on_worker`` cancels a running job's context or keeps a packed one from
  beginning;
- ``_cluster``: the child process that hosts the pool's own ``LocalCluster`` when no
  ``address`` is given.

Use it as ``pools.create_pool("dask", address=..., processes=..., connect_timeout=...)``;
it needs the ``poolbench[dask]`` extra.
"""

from ._client import DaskBackend

__all__ = ["DaskBackend"]
