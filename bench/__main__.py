"""``python -m bench`` (from the repository root, with the stack's environment): see bench/run.sh."""

import sys

from bench.run import main

sys.exit(main())
