"""chassis-console: the operator side of nameko-chassis.

Attaches to a nameko service's backdoor and shows what it is doing. This package never imports
nameko or eventlet (a test proves it): anything nameko-only runs in the service, shipped over the
backdoor as standard-library source, or in a child process.
"""

__version__ = "4.0.0"
