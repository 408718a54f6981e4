"""``python -m evalkit`` (also what ``accelerate launch -m evalkit`` runs)."""

import sys

from evalkit.cli import main

sys.exit(main())
