"""Job types of your own for the HTTP service: run them with

    poolbench serve --jobtypes examples.jobtypes_example        # from the repository's root
    curl -s localhost:8000/jobs -H 'content-type: application/json' \\
        -d '{"type": "resize", "data": {"width": 640, "height": 480, "factor": 4}}'
    poolbench loadtest --jobtypes examples.jobtypes_example --mix 'resize:3,noop:1' --duration 10s

A module of job types defines ``JOBTYPES``: each type has a name, a pydantic model
for its data (the service validates the request's ``data`` with it, answers 422
naming a bad field, and shows it in ``/openapi.json``) and a job function, plain
(``sync=``, for the thread and process backends) and/or ``async def`` (``coro=``,
for asyncio). The function gets the validated data as a dict. Define everything at
the top level of the module: the process backend sends the function by reference.
An installed package offers its types with an entry point instead of ``--jobtypes``::

    [project.entry-points."poolbench.jobtypes"]
    mypkg = "mypkg.jobtypes"
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from scenarios.jobtypes import JobType


class ResizeData(BaseModel):
    """Shrink a synthetic grey image by a whole factor (a box filter, in pure Python)."""

    # Refuse unknown fields, as the built-in types do: a misspelt "widht" is a 422, not a default.
    model_config = ConfigDict(extra="forbid")

    width: int = Field(gt=0, le=2048, description="pixels")
    height: int = Field(gt=0, le=2048, description="pixels")
    factor: int = Field(default=2, ge=1, le=16, description="each side shrinks this many times")


def resize(data: dict) -> dict:
    w, h, f = data["width"], data["height"], data["factor"]
    image = [[(x * 7 + y * 13) % 256 for x in range(w)] for y in range(h)]
    out = [
        [sum(image[y + dy][x + dx] for dy in range(f) for dx in range(f)) // (f * f) for x in range(0, w - f + 1, f)]
        for y in range(0, h - f + 1, f)
    ]
    return {
        "width": len(out[0]) if out else 0,
        "height": len(out),
        "mean": sum(map(sum, out)) // max(1, w // f * (h // f)),
    }


async def aresize(data: dict) -> dict:
    # CPU work would stall the event loop: run it on a thread from the asyncio backend.
    return await asyncio.to_thread(resize, data)


JOBTYPES = [
    JobType("resize", ResizeData, sync=resize, coro=aresize, example={"width": 64, "height": 48, "factor": 4}),
]
