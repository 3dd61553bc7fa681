"""``python -m xplayers``: the same command as ``xplayers`` (see :mod:`xplayers.cli`)."""

import sys

from xplayers.cli import main

if __name__ == "__main__":
    sys.exit(main())
