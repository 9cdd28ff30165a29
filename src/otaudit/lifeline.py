"""Child processes that end when the server does, however it ends.

A server killed with SIGKILL (or by the OOM killer) runs no cleanup, so its
children must notice by themselves. Each child started by ``multiprocessing``
holds the read end of a pipe whose write end only the process that started
it holds (``multiprocessing.parent_process().sentinel``); the kernel closes
that end when the parent dies, and the read end turns readable. One thread
per child waits on it and ends the process.

The ingest workers are forked by the forkserver, but their sentinel is still
the server's pipe, so they go first; the forkserver exits once no process
holds its "alive" pipe any more (the server and the workers), and the
multiprocessing resource tracker once no process holds its pipe: nothing
started by a killed server is left behind.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import wait

#: The exit status of a child whose parent died.
ORPHANED_EXIT: int = 3


def exit_with_parent() -> None:
    """In a ``multiprocessing`` child: end this process as soon as its parent is gone.

    ``os._exit``, not ``sys.exit``: there is nobody left to hand anything to,
    and no cleanup may wait on the dead parent. A no-op in the main process.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="otaudit-lifeline", daemon=True).start()
