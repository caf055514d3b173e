"""`python -m genir ...` (also what `torchrun -m genir train ...` starts in each process)."""

import sys

from genir.cli import main

sys.exit(main())
