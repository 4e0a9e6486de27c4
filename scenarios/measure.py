"""One measurement: one case on one implementation, in this process, which holds
nothing but the implementation under test (the runner starts a fresh ``python -m
scenarios.measure`` for each, as pyperf does).

Reads a JSON request on stdin — ``{"case", "implementation", "seed"}`` (with
``"profile": PATH``, py-spy records the run into PATH: :mod:`scenarios.profiling`), or
``{"control": true}`` for the control workload — runs the case's experiment
(:mod:`scenarios.experiments`) and writes one JSON line, the :class:`~scenarios.result.Result`,
on stdout. The current directory is importable (``-m`` puts it first on ``sys.path``),
so the user's modules are found as they were by the command that started the run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from pools.lowlevel import add_forkserver_preload, exit_with

from . import experiments
from .implementations import resolve
from .spec import Case, ImplSpec

__all__ = ["control_workload", "main", "measure"]


def control_workload() -> float:
    """A fixed pure-Python loop: its time tracks this machine's speed right now."""
    start = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    return time.perf_counter() - start


def _preload_harness() -> None:
    """Have the process pools' fork server import the harness modules this process
    has loaded, once, rather than each worker: the server never preloads the
    ``__main__`` of a program run with ``-m`` (nor any ``__main__`` on Python up to
    3.13.7, CPython gh-126631), so every worker ran this program's imports again
    (pydantic among them), most of the time of a short measurement. Only our own
    modules, whose import does nothing else, added to what the user's code asked for;
    and not this one, which each worker runs as ``__mp_main__`` (its imports then
    already loaded)."""
    own = [m for m in list(sys.modules) if m.startswith("scenarios.") and m != "scenarios.measure"]
    add_forkserver_preload("scenarios", *own)


def measure(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("control"):
        return {"control_s": control_workload()}
    case = Case.from_json(request["case"])
    impl = resolve(ImplSpec.model_validate(request["implementation"]))
    experiment = experiments.get(case.scenario.experiment)
    _preload_harness()
    if request.get("profile"):
        # A profile pass (poolbench run --profile): py-spy samples this process and its
        # workers while the experiment runs; the runner keeps the profile, not the result.
        from .experiments import load
        from .profiling import ProfileError, Recorder

        path = request["profile"]
        if case.scenario.experiment == "load":  # the timed part only, not the start and warm-up
            load.profile_window = lambda: Recorder(path)
            result = experiment.run(case, impl, request.get("seed", 0))
            if not os.path.exists(path):
                raise ProfileError("the load experiment ran no timed part to profile")
        else:
            with Recorder(path):
                result = experiment.run(case, impl, request.get("seed", 0))
    else:
        result = experiment.run(case, impl, request.get("seed", 0))
    return result.to_json()


#: exit code of a measurement whose runner ended before it, where it does not lead its
#: process group (the runner starts it in a session of its own: there, the group is
#: killed instead); nobody reads it
EXIT_RUNNER_GONE = 87
#: the runner's pid, set by the runner and taken out here (it is for this process, not
#: for the ones it starts)
RUNNER_PID = "POOLBENCH_RUNNER_PID"


def main() -> int:
    # A runner killed from outside (SIGKILL: it cannot kill this process group as its
    # own time limit does) must not leave its measurement running on: this process,
    # the leader of its group, then ends the group, a contender's workers with it.
    runner = int(os.environ.pop(RUNNER_PID, "") or os.getppid())
    if os.getppid() != runner:  # handed to another parent already: the runner is gone
        sys.exit(EXIT_RUNNER_GONE)
    exit_with(runner, EXIT_RUNNER_GONE, name="runner-watch", group=True)
    request = json.loads(sys.stdin.read())
    try:
        result = measure(request)
    except Exception as e:  # noqa: BLE001 - the runner records it against this cell and goes on
        traceback.print_exc()
        # the runner reads the last line of stderr: the error, on one line
        print(f"{type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # Run through the module's real name, so that the process backends pickle
    # functions of scenarios.*, which their workers can import, not of __main__.
    from scenarios import measure as _real

    sys.exit(_real.main())
