"""The chassis' own error tree (the console has its own: ``chassis_console.errors``)::

    ChassisError                    an expected failure a user can act on
    ├── ConfigError                 a setting cannot be used (config.py; names the key)
    ├── SnapshotError               a snapshot does not match schema v1 (view.model)
    ├── ManagementError             the RabbitMQ management API failed (amqp.management)
    └── RpcError / RpcTimeout       an RPC call raised remotely / got no reply (amqp.rpc)

Standard library only, and imports nothing: every layer may raise these.
"""


class ChassisError(Exception):
    """Base of every expected failure of nameko_chassis."""
