#!/usr/bin/env python3
"""Runs a command N times and prints median/min/max wall time and peak RSS.

Usage: measure.py LABEL RUNS CWD -- COMMAND...   (environment passed through)
Wall time is measured around fork/exec/wait; peak RSS comes from wait4's rusage (KiB).
"""
import os
import statistics
import subprocess
import sys
import time


def main():
    label, runs, cwd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    walls, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        rss.append(usage.ru_maxrss)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"{label}: exit {code}\n{err[-2000:]}")
    print(f"{label:<28} median {statistics.median(walls) * 1000:8.1f} ms  "
          f"min {min(walls) * 1000:8.1f} ms  max {max(walls) * 1000:8.1f} ms  "
          f"peak RSS {max(rss) / 1024:6.1f} MiB  ({runs} runs)")


if __name__ == "__main__":
    main()
