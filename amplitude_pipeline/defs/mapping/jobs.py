"""``propose_field_mappings``: the mapping assistant's ``propose`` (CONTRACT §9) as a job, its
draft shown in the UI (the op's output metadata ``mapping``)."""

from datetime import UTC, datetime

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    ResourceParam,
    graph,
    op,
)
from pydantic import Field

from amplitude_pipeline.amplitude.export import last_finished_week
from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.mapping.assistant import draft_mapping
from amplitude_pipeline.mapping.sources import SourceError, resolve_sources
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.mapping import FieldMappings


class ProposeFieldMappingsConfig(Config):
    sources: list[str] = Field(
        description="s3://bucket/key of an event file, s3://bucket/prefix/ (every .json.gz/.jsonl.gz under "
        "it), or a path on the run's machine."
    )
    identity: str | None = Field(
        default=None,
        description="The user_properties key holding the EHR id. Unset: candidates are named in comments "
        "and the draft does not load until one is chosen.",
    )
    against_current_mapping: bool = Field(
        default=False,
        description="Only what the code location's field_mappings.yaml lacks (a snippet to paste), "
        "instead of a whole mapping.",
    )
    samples: bool = Field(
        default=False, description="Show sample values in the draft: user_properties can hold personal data."
    )


@op(
    name="propose_field_mappings",
    out=Out(str, description="The draft mapping (YAML)."),
    description="A draft field_mappings.yaml from the events: each key's type, regex, section, with "
    "comments (python -m amplitude_pipeline.mapping propose).",
)
def propose_field_mappings_op(
    context: OpExecutionContext,
    config: ProposeFieldMappingsConfig,
    raw_event_store: ResourceParam[RawEventStore],
    field_mappings: ResourceParam[FieldMappings],
) -> Output[str]:
    def s3_client() -> object:
        return raw_event_store.client

    try:
        sources = resolve_sources(config.sources, s3_client)
    except SourceError as error:
        raise Failure(description=str(error)) from None
    draft = draft_mapping(
        sources,
        s3_client,
        identity_key=config.identity,
        against=field_mappings if config.against_current_mapping else None,
        samples=config.samples,
    )
    if draft.yaml is None:
        raise Failure(
            description="lines no mapping can load (each with its first file and line); a load would stop "
            "there too: fix or replace those files",
            metadata={"problems": MetadataValue.md("\n".join(f"- {problem}" for problem in draft.problems))},
        )
    for warning in draft.warnings:
        context.log.warning(warning)
    return Output(
        draft.yaml,
        metadata={
            "mapping": MetadataValue.md(f"```yaml\n{draft.yaml}```"),
            "sources": MetadataValue.json([source.label for source in sources]),
            "keys": MetadataValue.int(len(draft.profile.keys)),
            "records": MetadataValue.int(draft.profile.records),
            "samples_shown": config.samples,
        },
    )


@graph
def propose_field_mappings_graph() -> None:
    propose_field_mappings_op()


_LAST_WEEK = last_finished_week(datetime.now(UTC)).first_day

# A graph of its own: Dagster refuses an op and a job-graph of the same name in one code location.
propose_field_mappings = propose_field_mappings_graph.to_job(
    name="propose_field_mappings",
    description="Propose a field_mappings.yaml (or what the current one lacks) from events in S3; the "
    "draft is the op's output metadata 'mapping'. The Launchpad opens with the last finished week's "
    "object (as of when the code location loaded).",
    config={
        "ops": {
            "propose_field_mappings": {
                "config": {
                    "sources": [
                        f"s3://{SETTINGS.s3_bucket or 'S3_BUCKET'}/{SETTINGS.s3_prefix.strip('/')}/"
                        f"{_LAST_WEEK}.jsonl.gz"
                    ],
                    "against_current_mapping": True,
                }
            }
        }
    },
)
