"""``python -m samadapter``."""

from samadapter.cli.main import main

main()
