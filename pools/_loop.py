"""The private event loop that a pool runs on a daemon thread (asyncio and dask
backends): run it until stopped, then cancel what is left and close it."""

from __future__ import annotations

import asyncio
import threading


def run_private_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    """The target of the loop's thread: sets ``ready`` once the loop runs."""
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
