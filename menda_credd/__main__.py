"""``python -m menda_credd``: the same as the ``menda-credd`` console script."""

import sys

from menda_credd.entry import main

sys.exit(main())
