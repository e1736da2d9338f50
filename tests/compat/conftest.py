"""Service-side tests run nameko/eventlet code in-process: the process must be monkey-patched
before anything imports socket or threading, which ``-p tests.eventlet_patch`` does (see the
Makefile). Fail loudly when someone runs this folder without it."""

import eventlet.patcher

if not eventlet.patcher.is_monkey_patched("socket"):
    raise RuntimeError("run this folder eventlet-patched: pytest -p tests.eventlet_patch ...")
