"""``python -m menda_credd``: the same as the ``menda-credd`` console script."""

import sys

from menda_credd.cli import main

sys.exit(main())
