"""An eventlet backdoor with no nameko runner in it: `python -m tests.services.plain_backdoor PORT`."""

import sys

import eventlet

eventlet.monkey_patch()

from eventlet import backdoor  # noqa: E402

if __name__ == "__main__":
    backdoor.backdoor_server(eventlet.listen(("127.0.0.1", int(sys.argv[1]))), locals={})
