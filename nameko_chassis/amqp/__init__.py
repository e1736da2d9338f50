"""RabbitMQ without nameko or eventlet (the console uses it): the management HTTP API
(:mod:`.management`), a nameko-compatible RPC client over kombu (:mod:`.rpc`) and service
discovery (:mod:`.discovery`).
"""
