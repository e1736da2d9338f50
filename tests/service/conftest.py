"""Service-side tests: this pytest process runs nameko/eventlet code in-process, so it is
monkey-patched before anything else imports the socket or threading modules."""

import eventlet

eventlet.monkey_patch()
