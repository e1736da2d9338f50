"""A small, realistic shop to attach the console to: ``orders``, ``payments``, ``notifications``
and a ``shopper`` that generates a steady trickle of load. See ``nameko_chassis.demo.shop``."""
