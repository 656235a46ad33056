"""A stand-in harness for reconciler tests: runs until SIGTERM, or misbehaves on request.

`HIVE_STATE/crash` present: exit 3 at once (a crash loop). Otherwise write `HIVE_STATE/env`
and `HIVE_STATE/started` (a token of this start) and wait for SIGTERM. In a sandbox its
own pid is 1, so tests take an agent's pid on the host from the runtime, never from here.
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


def write(name: str, text: str) -> None:
    # Whole or not at all: a test that sees the file reads all of it.
    (state / f".{name}").write_text(text)
    os.replace(state / f".{name}", state / name)


write("started", str(time.time_ns()))
write("env", "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"{os.environ['HIVE_AGENT']} up", flush=True)
while True:
    time.sleep(3600)
