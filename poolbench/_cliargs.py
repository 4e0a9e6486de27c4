"""argparse value types shared by the sub-commands: each names the constraint."""

from __future__ import annotations

import argparse
import math
import re


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def duration(text: str) -> float:
    """``30``, ``30s``, ``2m``, ``1m30s``, ``1h`` → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
        if not parts or not any(parts.groups()):
            raise argparse.ArgumentTypeError(f"duration must look like 30s, 2m or 1m30s, got {text!r}")
        h, m, s = (int(g or 0) for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not 0 < seconds <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"duration must be > 0 and at most 24h, got {text!r}")
    return seconds
