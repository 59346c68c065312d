"""Run a command and write its resource usage as JSON: ``python -I -S bench/wrap.py OUT -- CMD...``.

Linux keeps ``ru_maxrss`` across ``execve`` (the high-water mark of the process image being
replaced counts), so a stage started straight from the orchestrator, which has imported
Dagster, would report at least the orchestrator's size. This wrapper is small (standard
library only, no site-packages): the stage is forked from it, and ``wait4`` on that one child
gives the stage's own peak (the largest of its processes it waited for) and CPU time.
"""

import json
import os
import sys
import time


def main() -> int:
    out, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        print("usage: wrap.py OUT -- CMD...", file=sys.stderr)
        return 2
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(out, "w") as report:
        json.dump(
            {
                "pid": pid,
                "returncode": os.waitstatus_to_exitcode(status),
                "wall_seconds": wall,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "max_rss_kib": usage.ru_maxrss,
            },
            report,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
