"""The poolbench load test: users submit a mix of job types and fetch their results.

Run by ``poolbench loadtest`` (which sets the ``POOLBENCH_*`` variables below), or by
hand, on one machine or several::

    POOLBENCH_SHAPE=steady POOLBENCH_USERS=50 POOLBENCH_DURATION=60 \\
        locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000

What counts as what, in locust's statistics:

- ``POST /jobs``: 202, accepted. ``POST /jobs [503 back-pressure]``: the queue was full
  or the server was draining; declared, so counted as a success — back-pressure is
  the service working as designed, not an error. Any other status is a failure.
- ``GET /jobs/{id}``: each user polls its oldest unfinished job once per iteration.
- ``JOB <status>`` rows (type ``JOB``) are not requests: one per finished job, whose
  "response time" is the job's time from accepted to finished, as the service saw it.

Only this process tree runs locust and gevent; it never imports the pools.
"""

from __future__ import annotations

import collections
import os
import random

from locust import FastHttpUser, LoadTestShape, constant, constant_throughput, events, task

try:
    from loadtests import profiles
except ImportError:  # run by path from a checkout that is not installed
    import profiles  # type: ignore[no-redef,import-not-found]  # found by path when run that way

# Run by hand without POOLBENCH_MIX: no-op jobs. (The job types' example data is in
# their registry, scenarios.jobtypes, which a locust process does not import.)
MIX = profiles.mix_from_env(os.environ.get(profiles.ENV_MIX) or profiles.mix_to_env([profiles.MixEntry("noop")]))
WEIGHTS = [e.weight for e in MIX]
BODIES = [e.body() for e in MIX]
USER_RATE = float(os.environ.get(profiles.ENV_USER_RATE, "0"))
TOKEN = os.environ.get(profiles.ENV_TOKEN)
PENDING_LIMIT = 100  # unfinished jobs a user remembers; older ones are no longer polled
FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


class JobUser(FastHttpUser):
    wait_time = constant_throughput(USER_RATE) if USER_RATE > 0 else constant(0)
    # The service answers a full queue at once; a long wait means something is wrong.
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.pending: collections.deque[int] = collections.deque(maxlen=PENDING_LIMIT)
        self.headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}

    @task
    def submit_and_fetch(self) -> None:
        body = random.choices(BODIES, WEIGHTS)[0]
        with self.client.post("/jobs", json=body, headers=self.headers, name="POST /jobs", catch_response=True) as r:
            if r.status_code == 202:
                self.pending.append(r.json()["job_id"])
                r.success()
            elif r.status_code == 503:
                r.request_meta["name"] = "POST /jobs [503 back-pressure]"
                r.success()
            else:
                r.failure(f"POST /jobs answered {r.status_code}: {(r.text or '')[:200]}")
        if self.pending:
            self._fetch(self.pending[0])

    def _fetch(self, job_id: int) -> None:
        with self.client.get(f"/jobs/{job_id}", headers=self.headers, name="GET /jobs/{id}", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"GET /jobs/{job_id} answered {r.status_code}: {(r.text or '')[:200]}")
                self.pending.popleft()
                return
            info = r.json()
            r.success()
        if info["status"] in FINISHED:
            self.pending.popleft()
            took = 1000 * (info["finished_at"] - info["accepted_at"])
            events.request.fire(
                request_type="JOB",
                name=f"JOB {info['status']}",
                response_time=took,
                response_length=0,
                exception=None,
                context={},
            )


class PoolbenchShape(LoadTestShape):
    """Users over time, from ``POOLBENCH_SHAPE`` (see ``loadtests.profiles.users_at``)."""

    def __init__(self) -> None:
        super().__init__()
        self.shape = os.environ.get(profiles.ENV_SHAPE, "steady")
        self.users = int(os.environ.get(profiles.ENV_USERS, "10"))
        self.spawn_rate = float(os.environ.get(profiles.ENV_SPAWN_RATE, "10"))
        self.duration = float(os.environ.get(profiles.ENV_DURATION, "30"))

    def tick(self):
        users = profiles.users_at(self.shape, self.get_run_time(), self.users, self.duration)
        if users is None:
            return None
        # A spike arrives at once; the other shapes grow at the spawn rate.
        return users, float(self.users) if self.shape == "spike" else self.spawn_rate
