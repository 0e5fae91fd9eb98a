"""Run ``dnn`` and SIGKILL it at an exact instant of a file's write: once its temporary file is complete but not yet
renamed (``written``), or once it was renamed but before dnn wrote anything after it (``committed``).

    python killer.py written state.pt 3 -- train --resume --run-dir runs/x

kills the process right after the third temporary file of ``state.pt`` is on disk. A process that never reaches
that instant exits with code 3 (the kill did not land), so a test can tell.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import dnn.io
import dnn.rundir
from dnn.cli import main


def arm(when: str, name: str, nth: int) -> None:
    seen = 0

    def hit(path) -> None:
        nonlocal seen
        if Path(path).name == name:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    write_temporary, commit = dnn.io.write_temporary, dnn.io.commit

    def written(path, write):
        tmp = write_temporary(path, write)
        if when == "written":
            hit(path)
        return tmp

    def committed(tmp, path):
        result = commit(tmp, path)
        if when == "committed":
            hit(path)
        return result

    for module in (dnn.io, dnn.rundir):
        module.write_temporary, module.commit = written, committed


if __name__ == "__main__":
    when, name, nth, sep, *argv = sys.argv[1:]
    assert sep == "--" and when in ("written", "committed"), sys.argv
    arm(when, name, int(nth))
    code = main(argv)
    sys.exit(3 if code == 0 else code)
