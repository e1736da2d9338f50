"""nameko-chassis: a production chassis for nameko services and a live introspection console.

The layers, one runtime per folder, imports pointing down (docs/architecture.md):

- :mod:`.probe` — standard library only; shipped into any service over the backdoor;
- :mod:`.view` — pure: the typed snapshot and the page renderer (rich only);
- :mod:`.amqp` — RabbitMQ management API, RPC client, discovery (kombu, no eventlet);
- :mod:`.providers` — the chassis' nameko DependencyProviders;
- :mod:`.service`, :mod:`.config`, :mod:`.debug`, :mod:`.demo` — the chassis itself.

Importing ``nameko_chassis``, its probe, view or amqp imports neither nameko nor eventlet.
"""

__version__ = "4.0.0"
