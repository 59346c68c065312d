from dagster import AssetSelection, define_asset_job

from amplitude_pipeline.defs.partitions import weekly_partitions

export_amplitude_events_job = define_asset_job(
    "export_amplitude_events",
    selection=AssetSelection.assets("amplitude_events"),
    partitions_def=weekly_partitions,
    description="Export one finished week from Amplitude into S3.",
)
