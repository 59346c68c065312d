from dagster import AssetSelection, define_asset_job

export_amplitude_events = define_asset_job(
    "export_amplitude_events",
    selection=AssetSelection.assets("amplitude_events"),
    description="Export one finished week from Amplitude into S3.",
)
