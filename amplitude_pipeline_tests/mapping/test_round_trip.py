"""Whatever the user_properties, the proposed mapping loads them: ``propose --identity`` then the
real transform over every record gives no error, and ``validate`` with it finds nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amplitude_pipeline.transform.records import transform_single_record

from .support import event, run, write_events

# Values as Amplitude's SDKs send them: every JSON kind, and strings that some type, or a type
# with a regex, can read ("34 years", "182 см", "72.5 kg", two date forms, bool words).
TRICKY_TEXT = [
    "", " ", "34 years", "182 см", "72.5 kg", "-3 °C", "3.8.0", "2024-01-05", "05.01.2024",
    "2024-01-05 10:00:00", "2024-01-05T10:00:00+03:00", "yes", "NO", "true", "0", "1", "1.5",
    "1e5", "1_000", "72,5", "м", "EMPTY", "null", "\x00", "line\nbreak", "born 1990-05-01",
]  # fmt: skip
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(TRICKY_TEXT),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
JSON_VALUES = st.one_of(
    JSON_SCALARS,
    st.lists(JSON_SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=2),
)
KEYS = st.one_of(
    st.sampled_from(["age", "City", "yes", "uuid", "event_time", "1st", "a b", "x'y", "ключ", "a\nb", "#"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=15),
).filter(lambda key: key != "ehr_id")
# Few users, so that users come back with the same or other values (permanent or changeable).
IDENTITIES = st.one_of(st.none(), st.sampled_from(["E1", "E2", " E3 ", ""]), st.integers(0, 3))


@st.composite
def event_files(draw: st.DrawFn) -> list[dict[str, Any]]:
    keys = draw(st.lists(KEYS, min_size=1, max_size=6, unique=True))
    records = []
    for index in range(draw(st.integers(min_value=1, max_value=12))):
        properties = {key: draw(JSON_VALUES) for key in keys if draw(st.booleans())}
        if draw(st.booleans()):
            properties["ehr_id"] = draw(IDENTITIES)
        records.append(event(index, amplitude_id=draw(st.integers(1, 3)), **properties))
    return records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=event_files())
def test_the_proposed_mapping_loads_every_record_and_validates_clean(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write_events(Path(directory) / "week.jsonl.gz", records)
        proposed = run("propose", path, "--identity", "ehr_id")
        assert proposed.code == 0, proposed.stderr
        mappings = proposed.mapping()

        for record in records:
            transform_single_record(record, mappings)

        mapping_file = Path(directory) / "proposed.yaml"
        mapping_file.write_text(proposed.stdout)
        validated = run("validate", "--mapping", mapping_file, path)
    assert (validated.code, validated.stdout) == (0, "")
