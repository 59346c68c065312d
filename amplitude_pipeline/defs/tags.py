"""What the production instance's queue acts on (deploy/dagster.yaml).

Every run that writes the DWH tables carries ``DWH_LOAD_TAGS`` and every step that does is in
the pool ``DWH_LOAD_POOL``: the queue lets at most N of them run at once, so that a backfill of
a year of weeks does not open a year's worth of DWH connections. The tag reaches the runs this
code location starts (the automation, the sensors, the jobs); the pool also reaches the ones a
person launches from the UI.
"""

DWH_LOAD_TAG_KEY = "amplitude_pipeline/dwh_load"
DWH_LOAD_TAGS = {DWH_LOAD_TAG_KEY: "true"}
DWH_LOAD_POOL = "dwh_load"
