"""The Dagster layer. Importing it first silences Dagster's notices about features this code
location uses on purpose: every process that loads the definitions (the CLI, each run's step
processes, the UI's code server) printed each of them once, dozens of times per demo.

Each is matched by its exact category and message, so any other notice, and these same ones
about another API, are still shown. Dagster is pinned (pyproject.toml): an upgrade that changes
these features is a deliberate change the tests see.
"""

import warnings

from dagster import BetaWarning, PreviewWarning

# tmp_user_properties: the source table's observation. multi_observable_source_asset is beta too.
warnings.filterwarnings("ignore", r"Function `observable_source_asset` is currently in beta", BetaWarning)
# user_properties_keys_known is judged per week (see defs/amplitude/checks.py).
warnings.filterwarnings(
    "ignore", r"Specifying a partitions_def on an AssetCheckSpec is currently in preview", PreviewWarning
)
# Raised by Dagster itself (SensorDefinition.with_attributes passes its own empty `owners` when
# Definitions binds resources to a sensor's jobs); no sensor here sets owners.
warnings.filterwarnings(
    "ignore", r"Parameter `owners` of initializer `SensorDefinition.__init__`", BetaWarning
)
