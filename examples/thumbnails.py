"""An example workload for ``poolbench run``: thumbnails of images kept in storage.

Each job fetches an image (a storage round trip: I/O, it waits) and shrinks it by
averaging blocks of pixels in pure Python (CPU: it holds the GIL while it computes).
Threads overlap the waiting but not the computing; processes do both, at the price
of sending each image's thumbnail back; asyncio overlaps the waiting on one thread.
Which one serves it best, and with how many workers, is what the run answers::

    poolbench run --workload examples.thumbnails:thumbnail --args examples.thumbnails:sample_args

``thumbnail`` is a pair of both forms (a plain and a coroutine function), so that
every implementation can run it, the asyncio ones included; ``sample_args`` yields
the argument tuples; ``make_executor`` is an Executor of your own (``--impl
examples.thumbnails:make_executor``); ``examples/thumbnails.toml`` is the same run as
a scenario file, with a second workload in the mix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import multiprocessing
import random
import time

FETCH_MS = 2.0  # the storage round trip of one image


def _image(seed: int, size: int) -> bytes:
    """A size × size grey image: the same bytes for the same seed."""
    return random.Random(seed).randbytes(size * size)


def _shrink(pixels: bytes, size: int, factor: int) -> bytes:
    """Average each factor × factor block into one pixel."""
    out = bytearray()
    area = factor * factor
    for y in range(0, size - factor + 1, factor):
        for x in range(0, size - factor + 1, factor):
            total = 0
            for dy in range(factor):
                start = (y + dy) * size + x
                total += sum(pixels[start : start + factor])
            out.append(total // area)
    return bytes(out)


def resize_image(seed: int, size: int = 96, factor: int = 4) -> bytes:
    """Fetch image ``seed`` (size × size) and return its thumbnail."""
    time.sleep(FETCH_MS / 1000)
    return _shrink(_image(seed, size), size, factor)


async def aresize_image(seed: int, size: int = 96, factor: int = 4) -> bytes:
    await asyncio.sleep(FETCH_MS / 1000)
    return _shrink(_image(seed, size), size, factor)


#: both forms: the thread and process pools take the first, the asyncio ones the second
thumbnail = (resize_image, aresize_image)


def sample_args():
    """The images of one run: 200 of three sizes, the same every time."""
    rng = random.Random(7)
    for i in range(200):
        yield (i, rng.choice((64, 96, 128)))


def checksum(seed: int) -> str:
    """Fetch image ``seed`` and return its SHA-256: almost all waiting."""
    time.sleep(FETCH_MS / 1000)
    return hashlib.sha256(_image(seed, 64)).hexdigest()


async def achecksum(seed: int) -> str:
    await asyncio.sleep(FETCH_MS / 1000)
    return hashlib.sha256(_image(seed, 64)).hexdigest()


checksum_job = (checksum, achecksum)


def make_executor(workers: int) -> concurrent.futures.Executor:
    """An Executor of your own: here, a ProcessPoolExecutor whose workers start from a
    fork server instead of a fork of this process."""
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
