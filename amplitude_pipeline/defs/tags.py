"""Run tags that the production instance's queue acts on (deploy/dagster.yaml).

Every run that writes the DWH tables carries ``DWH_LOAD_TAGS``: the queued run coordinator lets at
most N of them run at once (``tag_concurrency_limits``), so that a backfill of a year of weeks
does not open a year's worth of DWH connections.
"""

DWH_LOAD_TAG_KEY = "amplitude_pipeline/dwh_load"
DWH_LOAD_TAGS = {DWH_LOAD_TAG_KEY: "true"}
