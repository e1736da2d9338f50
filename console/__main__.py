"""``python -m chassis_console``: the same as the ``chassis-console`` command."""

from .cli import main

main()
