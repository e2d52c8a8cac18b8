"""``python -m cellscreen.cli``: the ``cellscreen`` command without its installed script."""

import sys

from cellscreen.cli import main

sys.exit(main())
