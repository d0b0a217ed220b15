"""Runs a command and writes its peak resident memory (KiB) and exit status to REPORT.

  python3 -I -S peak_rss.py REPORT COMMAND [ARG…]

Why a separate small interpreter: Linux charges a process, in its ru_maxrss, the resident size
of the image it replaced at exec, and a child forked from the benchmark (which holds the whole
corpus) would report the benchmark's size. Started from this small process, ru_maxrss is exact
whenever the command grows beyond this interpreter's own size (the floor, measured by running
`true`); below that floor the command's VmHWM, polled every millisecond, is used instead."""

import os
import sys
import time


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main(report_path, argv):
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    polled = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        polled = max(polled, vm_hwm_kb(pid))
        time.sleep(0.001)
    with open(report_path, "w") as f:
        f.write("%d %d %d\n" % (usage.ru_maxrss, polled, os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
