"""``python -m amplitude_pipeline.mapping propose|validate`` (CONTRACT §9)."""

import sys

from amplitude_pipeline.mapping.cli import main

sys.exit(main())
