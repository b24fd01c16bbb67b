"""``python -m wampd``: the same as the ``wampd`` command."""

from .cli import main

main()
