import os
import sys

# Before polars loads, for the features step only: its allocator gives freed memory back to the
# system after 5 s, not its default 0.5 s, so the step's partitions (a few seconds each,
# gigabytes freed and taken again) reuse pages instead of faulting them in afresh. At 10M
# trades: page faults 10.2M -> 8.3M, system time 33 -> 26-29 s, peak +0.1 GB; wall 97.1 / 104.2 s
# against 103.5 / 107.0 s alternating. The rings step's peak rose by 0.45 GB with it (6.5 -> 7.0
# GB), so it keeps the default. A value the user set is kept (polars adds it after its own).
if sys.argv[1:2] == ["features"]:
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:5000,muzzy_decay_ms:5000")

from engine.cli import main  # noqa: E402  (after the allocator's setting)

sys.exit(main())
