"""Start a command and report its CPU time and peak RSS: ``RESULT_FILE CMD...``.

Run as ``python -I -S _launch.py``, so that this process stays small. Linux
counts in a child's peak RSS the memory of the process it was started from
(the high-water mark of the address space it replaces at ``exec``): started
straight from the suite, which holds boto3 and matplotlib, every peer would
show at least the suite's own 100 MB. From here the floor is this launcher's
few megabytes.

Writes ``exit_code cpu_seconds max_rss_kib`` to RESULT_FILE.
"""

import os
import sys


def main() -> int:
    result, argv = sys.argv[1], sys.argv[2:]
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w") as handle:
        handle.write(f"{code} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
