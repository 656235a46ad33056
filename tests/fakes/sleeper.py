"""A stand-in harness for reconciler tests: runs until SIGTERM, or misbehaves on request.

`HIVE_STATE/crash` present: exit 3 at once (a crash loop). Otherwise write `HIVE_STATE/pid`
and wait for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

state = Path(os.environ["HIVE_STATE"])
if (state / "crash").exists():
    print("crashing on purpose", flush=True)
    sys.exit(3)
(state / "pid").write_text(str(os.getpid()))
(state / "env").write_text("\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"{os.environ['HIVE_AGENT']} up", flush=True)
while True:
    time.sleep(3600)
