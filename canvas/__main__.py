"""`python -m canvas` is the `canvas` command."""

import sys

from canvas.cli import main

sys.exit(main())
