"""The embedded model server process: llama.cpp's own HTTP server (xllamacpp) on 127.0.0.1.

Started by `localserver.EmbeddedServer` as `python -m dew.agents.localserver_child PARENT_PID ...`.
It must never outlive the dew process that started it, however that process dies (SIGKILL, a CI
time-out, the OOM killer): an orphaned server holds ~600 MB and a core. So a watchdog thread
checks its parent every half second and kills this process the moment the parent is gone.
llama.cpp computes outside the GIL, so the watchdog runs even while a reply is being generated.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

WATCH_INTERVAL = 0.5


def watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL)
    os.kill(os.getpid(), signal.SIGKILL)  # the parent died: go now, mid-generation or not


def main(argv: list[str]) -> None:
    parent, model, port, n_ctx, n_threads, alias = argv
    threading.Thread(target=watch_parent, args=(int(parent),), daemon=True, name="parent-watchdog").start()
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = model
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = int(port)
    params.n_ctx = int(n_ctx)
    params.cpuparams.n_threads = int(n_threads)
    params.cpuparams_batch.n_threads = int(n_threads)
    server = xlc.Server(params)  # returns once the model is loaded and the port listens
    try:
        while True:  # the server runs on its own threads; this process only has to stay alive
            time.sleep(3600)
    finally:
        del server


if __name__ == "__main__":
    main(sys.argv[1:])
