"""Sampled profiles with py-spy: of a measurement (``poolbench run --profile``), and
the helpers that read them (the report's flame graphs, the service's /debug/profile).

Why py-spy: it samples from outside the process (ptrace), so the code under test runs
unchanged and unpaused (``--nonblocking``); it follows child processes
(``--subprocesses``: a process pool's workers, a fork server's children); and it
writes flame graphs (SVG), speedscope files and collapsed stacks. In-process
profilers (cProfile, yappi, pyinstrument) trace or sample only the process they run
in, and a tracing one slows every call of the pool that it measures.

A recording is collapsed stacks (``py-spy record --format raw``): one line per
distinct stack, ``outer;...;inner count``, the outermost frame naming the process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "ProfileError",
    "Recorder",
    "TopFrame",
    "by_role",
    "find_py_spy",
    "parse_collapsed",
    "top_frames",
]

RATE = 200  # samples a second
START_TIMEOUT = 30.0  # seconds for py-spy to attach
STOP_TIMEOUT = 60.0  # seconds for py-spy to write its file once stopped


class ProfileError(Exception):
    """A profile could not be recorded (py-spy missing, or unable to attach): the
    message says why and what to do."""


def find_py_spy() -> str | None:
    """The py-spy executable: beside this interpreter (a venv's bin/), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        exe = os.path.join(folder, "py-spy")
        if os.access(exe, os.X_OK):
            return exe
    return shutil.which("py-spy")


class Recorder:
    """``with Recorder(path):`` samples this process and its children into ``path``
    (collapsed stacks) for the block's duration; it begins sampling before the block
    runs and has written the file when the block ends."""

    def __init__(self, path: str, *, rate: int = RATE) -> None:
        self.path = path
        self.rate = rate
        self._proc: subprocess.Popen[str] | None = None
        self._said: list[str] = []

    def __enter__(self) -> Recorder:
        exe = find_py_spy()
        if exe is None:
            raise ProfileError("py-spy is not installed: pip install 'poolbench[debug]' (or pip install py-spy)")
        cmd = [exe, "record", "--pid", str(os.getpid()), "--subprocesses", "--nonblocking"]
        cmd += ["--rate", str(self.rate), "--format", "raw", "--output", self.path]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # py-spy says "Sampling process ..." once attached: read up to that line, with a
        # deadline (a thread reads, so that a silent py-spy cannot block us).
        started = threading.Event()
        out = self._proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                self._said.append(line.rstrip())
                if "Sampling process" in line:
                    started.set()
            started.set()

        threading.Thread(target=read, name="py-spy-output", daemon=True).start()
        if not started.wait(START_TIMEOUT) or self._proc.poll() is not None:
            self._kill()
            raise ProfileError(
                f"py-spy could not attach to pid {os.getpid()}: {' '.join(self._said)[-400:] or 'no output'}. It "
                "uses ptrace: run as root, or allow it (sysctl kernel.yama.ptrace_scope=0; in a container, "
                "--cap-add SYS_PTRACE)"
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
            if exc is None:
                raise ProfileError(f"py-spy did not stop within {STOP_TIMEOUT:g} s") from None
        if exc is None and not os.path.exists(self.path):
            raise ProfileError(f"py-spy wrote no profile: {' '.join(self._said)[-400:]}")
        if exc is None:
            with open(self.path) as f:
                text = f.read()
            with open(self.path, "w") as f:
                f.write(by_role(text, os.getpid()))

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


_LINE = re.compile(r"^(.*) (\d+)$", re.S)
_PROCESS_FRAME = re.compile(r'(?:^|(?<=;))process (\d+):".*?"(?=;)', re.M | re.S)


def by_role(text: str, me: int) -> str:
    """py-spy's collapsed stacks with each process by its role: a child's stacks are
    ``process PARENT;process CHILD;frames``, and a forked worker has its parent's command
    line, so its pid tells it apart. Each stack becomes ``[this process];frames`` or
    ``[child process];frames``, so that the stacks of several workers merge. A NUL in
    the text (a frame py-spy read from a process's memory mid-change: it samples
    without pausing the process) is dropped first: NUL marks where the pid is."""
    marked = _PROCESS_FRAME.sub(lambda m: f"\x00{m.group(1)}\x00", text.replace("\x00", ""))
    out = []
    for line in marked.splitlines():
        if "\x00" in line:
            _, pid, rest = line.rsplit("\x00", 2)
            role = "[this process]" if pid == str(me) else "[child process]"
            line = role + rest
        out.append(line)
    return "\n".join(out) + "\n"


_PROCESS = re.compile(r'^process \d+:"(.*)"$', re.S)


def _process_frame(frame: str) -> str:
    """py-spy's process frame (``process 123:"cmdline"``) as its role, so that the
    stacks of several workers merge."""
    m = _PROCESS.match(frame)
    if m is None:
        return frame
    cmd = m.group(1)
    if "multiprocessing" in cmd or "forkserver" in cmd or "spawn_main" in cmd or "_process_worker" in cmd:
        return "[child process]"
    return "[this process]"


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """Collapsed stacks → {stack (outermost first): samples}. A process's command
    line may hold newlines: a record ends at a line ending in its count."""
    stacks: Counter[tuple[str, ...]] = Counter()
    pending = ""
    for line in text.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        m = _LINE.match(pending)
        if m is None:
            continue
        pending = ""
        frames = m.group(1).split(";")
        if frames and frames[0].startswith("process ") and frames[0][8:9].isdigit():
            # the process frame may itself hold ';' in its command line: rejoin up to the closing quote
            i = 0
            while not frames[i].endswith('"') and i + 1 < len(frames):
                i += 1
            frames = [";".join(frames[: i + 1]), *frames[i + 1 :]]
            frames[0] = _process_frame(frames[0])
        stacks[tuple(frames)] += int(m.group(2))
    return stacks


@dataclass(frozen=True)
class TopFrame:
    """One function in a profile: its share of the samples where it was running
    (``self_share``) and where it was on the stack (``total_share``)."""

    frame: str
    self_share: float
    total_share: float


def top_frames(stacks: Counter[tuple[str, ...]], n: int = 10) -> list[TopFrame]:
    """The ``n`` frames with the most samples of their own (the innermost frame)."""
    total = sum(stacks.values())
    if not total:
        return []
    own: Counter[str] = Counter()
    on_stack: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        for frame in set(stack):
            on_stack[frame] += count
    return [TopFrame(f, c / total, on_stack[f] / total) for f, c in own.most_common(n)]
