"""pytest plugin for the service-side test process (``pytest -p tests.eventlet_patch``):
monkey-patches eventlet before any conftest imports socket, threading or kombu."""

import eventlet

eventlet.monkey_patch()
