"""The probe: what runs *inside* a nameko service to inspect it. Standard library only.

The console ships this package's source over the backdoor (one name, ``__chassis__``, in the
backdoor's shared namespace, tagged with a hash of the sources), so any nameko service can be
inspected without nameko-chassis installed; the chassis and ``debug_runner`` import it normally.
Modules import each other only at module level and only relatively (``from . import frames``):
the shipped copy is a package that exists just while it boots.
"""

#: The package's modules in dependency order: the order the console ships and boots them.
MODULES: tuple[str, ...] = (
    "privates", "schema", "redaction", "frames", "entrypoints", "wire", "process", "backlog",
    "collect", "watchdog", "logtail", "agent", "repl",
)
