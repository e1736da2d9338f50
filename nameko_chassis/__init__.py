"""nameko-chassis: a production chassis for nameko services and a live introspection console.

This module stays light on purpose: importing ``nameko_chassis`` (or its pure modules
``introspection``, ``snapshot`` and ``render``) must not import nameko or eventlet, so the console
can use them. The service-side modules (``service``, ``debug``, the providers) import nameko.
"""

__version__ = "0.1.0"
