"""The engine as a child process with its output in files, not pipes.

`run` logs a JSON line per signal, order and fill: a pipe that the test reads only at the end
fills up (64 KiB) and blocks the engine mid-run. Files never block. `communicate()` returns
what was written, as `subprocess.Popen.communicate` would.
"""

from __future__ import annotations

import subprocess
import tempfile
from typing import Any


class EngineProcess:
    def __init__(self, args: list[str], *, text: bool = False, **popen: Any) -> None:
        # Kept open for the process's life and removed by the OS when the object goes.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._text = text
        self.process = subprocess.Popen(args, stdout=self._out, stderr=self._err, **popen)

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        self.process.wait(timeout)
        return self._read(self._out), self._read(self._err)

    def _read(self, file: Any) -> Any:
        file.seek(0)
        data = file.read()
        return data.decode() if self._text else data

    def __getattr__(self, name: str) -> Any:  # send_signal, poll, kill, wait, returncode, pid
        return getattr(self.process, name)
