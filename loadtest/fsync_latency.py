"""The disk's own fdatasync latency, without the gateway: appends of BYTES (16 KiB by default,
about one group commit) each followed by an fdatasync, in a loop for SECONDS, in DIR (the
gateway's data volume). MODE=overwrite (the default) rewrites the first 512 MiB of the file
over and over, as the WAL does inside its preallocated segments; MODE=grow lets the file grow;
MODE=truncate cuts it back to zero every 512 MiB. Run a deletion beside it to see what freeing
blocks does to the log's syncs (docs/bench-log/2026-11-to-12.md, the reaper row).

    python3 loadtest/fsync_latency.py SECONDS [BYTES] [DIR]
"""
import os
import sys
import time

seconds = float(sys.argv[1])
size = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
directory = sys.argv[3] if len(sys.argv) > 3 else "/tmp"
mode = os.environ.get("MODE", "overwrite")
path = os.path.join(directory, f"fsync-latency-{os.getpid()}.dat")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
block = os.urandom(size)
latencies, written, end = [], 0, time.time() + seconds
try:
    while time.time() < end:
        os.write(fd, block)
        written += size
        started = time.perf_counter()
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - started)
        if written > 512 << 20 and mode != "grow":
            if mode == "truncate":
                os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            written = 0
finally:
    os.close(fd)
    os.unlink(path)
latencies.sort()
n = len(latencies)
ms = lambda q: 1000 * latencies[min(n - 1, int(q * n))]
print(
    f"{n} fdatasyncs of {size}-byte appends in {seconds:.0f} s ({mode}): mean {1000 * sum(latencies) / n:.3f} ms, "
    f"p50 {ms(0.5):.3f}, p99 {ms(0.99):.3f}, p99.9 {ms(0.999):.3f}, max {1000 * latencies[-1]:.1f} ms; "
    f"over 10 ms: {sum(x > 0.01 for x in latencies)}, over 50 ms: {sum(x > 0.05 for x in latencies)}"
)
