"""``python -m minivision``: the same as the ``minivision`` command."""

import sys

from minivision.cli import main

sys.exit(main())
