"""An HTTP test server outlives no test: it exits once the process that started it is gone.
A test process that crashes runs no teardown, and a server listening on a socket (unlike a
stdio one, whose pipe closes) would otherwise run on and load the machine."""
import os
import threading
import time


def exit_with_parent(every: float = 1.0) -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
