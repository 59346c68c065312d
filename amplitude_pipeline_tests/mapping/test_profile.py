"""The profiler's judgements one by one: types and regexes, sections, bounded memory, names."""

from __future__ import annotations

import ast
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from amplitude_pipeline.mapping import profile as profile_module
from amplitude_pipeline.mapping.profile import Candidate, KeyProfile, Profile, PropertyProfiler
from amplitude_pipeline.mapping.render import column_name_for, yaml_scalar
from amplitude_pipeline.transform.mapping import SYSTEM_COLUMNS
from amplitude_pipeline_tests.support import REPO_ROOT

from .support import event


def profiled(*snapshots: dict[str, Any], identity: str | None = "ehr_id", **options: Any) -> Profile:
    profiler = PropertyProfiler(identity, **options)
    profiler.start_source("week.jsonl.gz")
    for index, properties in enumerate(snapshots):
        profiler.observe_record(
            event(index, amplitude_id=properties.pop("_amplitude_id", 1), **properties), index
        )
    return profiler.profile()


def key(profile: Profile, name: str) -> KeyProfile:
    found = profile.key(name)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, "no", 1, "YES", ""], Candidate("bool")),
        ([3, "4", 5.0, -2], Candidate("int")),
        ([72.5, "73", 80], Candidate("float")),
        (["2024-01-05", "05.01.2024"], Candidate("date")),
        (["2024-01-05 10:00:00", "2024-01-05T10:00:00+03:00", "2024-01-05"], Candidate("datetime")),
        (["30 лет", 31, "32"], Candidate("int", r"^\s*(\d+)")),
        (["182 см", "175"], Candidate("int", r"^\s*(\d+)")),
        (["-3 °C", "4 °C"], Candidate("int", r"^\s*([+-]?\d+)")),
        (["72.5 kg", "80 kg"], Candidate("float", r"^\s*(\d+(?:\.\d+)?)")),
        (
            ["born 1990-05-01", "01.05.1990 (approx)"],
            Candidate("date", r"(\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4})"),
        ),
        # The regex would make 3 of "3.8.0": a version is text. So is a number with a comma.
        (["3.8.0", "4.0.1"], Candidate("str")),
        (["72,5 kg"], Candidate("str")),
        (["Kazan", 7, True], Candidate("str")),
        ([None, "", None], Candidate("str")),  # never a value: nothing says it is not text
        ([{"a": 1}, "x"], None),  # nothing holds an object: ignore
        (["a\x00b"], None),  # nor a NUL (PostgreSQL text cannot)
    ],
)
def test_the_most_specific_candidate_every_value_converts_to(
    values: list[Any], expected: Candidate | None
) -> None:
    profile = profiled(*({"ehr_id": f"E{index}", "k": value} for index, value in enumerate(values)))
    proposal = key(profile, "k").proposal
    assert (proposal and (proposal.column_type, proposal.regex)) == (expected and expected[:2])


def test_a_user_whose_value_changes_makes_the_key_changeable_under_that_type() -> None:
    profile = profiled(
        {"ehr_id": "E1", "premium": "yes", "city": "Kazan", "weight": 72.5},
        {"ehr_id": "E1", "premium": True, "city": "Kazan", "weight": ""},  # the same flag; weight NULL
        {"ehr_id": "E1", "premium": 1, "city": "Ufa", "weight": 73},
        {"ehr_id": "E2", "premium": "no", "city": "Ufa", "weight": 60},
    )
    assert not key(profile, "premium").changes_under(Candidate("bool"))
    assert key(profile, "premium").changes_under(Candidate("str"))  # as text "yes" is not "true"
    assert key(profile, "city").changes_under(Candidate("str"))
    assert key(profile, "weight").changes_under(Candidate("float"))  # 72.5, then NULL, then 73


def test_users_are_the_identity_else_the_amplitude_id() -> None:
    profile = profiled(
        {"ehr_id": "E1", "gender": "ж", "_amplitude_id": 1},
        {"ehr_id": "E2", "gender": "м", "_amplitude_id": 1},  # a shared device: another user
        {"gender": "ж", "_amplitude_id": 7},
        {"ehr_id": None, "gender": "м", "_amplitude_id": 7},  # an anonymous user whose gender changed
    )
    assert key(profile, "gender").changes_under(Candidate("str"))
    assert profile.users_followed == 3


def test_identity_candidates_are_one_per_amplitude_id_and_different_per_user() -> None:
    profile = profiled(
        *(
            {"user_ref": f"R{user}", "city": "Kazan", "age": 30 + user % 2, "_amplitude_id": user}
            for user in range(10)
            for _ in range(2)
        ),
        identity=None,
    )
    assert profile.identity_candidates == ("user_ref",)


def test_followed_users_are_bounded_and_counted_by_estimate() -> None:
    snapshots = [{"ehr_id": f"E{user}", "city": "Kazan"} for user in range(5_000)]

    profile = profiled(*snapshots, max_users=500)

    assert profile.users_sampled
    assert 250 <= profile.users_followed <= 500
    assert 3_500 < profile.users_estimate < 6_500
    assert key(profile, "city").records == 5_000


def test_distinct_values_are_exact_up_to_the_cap_then_a_lower_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "DISTINCT_CAP", 50)
    profile = profiled(*({"ehr_id": "E1", "many": f"v{n}", "few": n % 3} for n in range(200)))

    assert (key(profile, "many").distinct, key(profile, "many").distinct_is_lower_bound) == (50, True)
    assert (key(profile, "few").distinct, key(profile, "few").distinct_is_lower_bound) == (3, False)
    assert key(profile, "many").proposal == Candidate("str")  # a base type: no regex, no pattern


def test_past_the_distinct_cap_only_the_leading_type_and_str_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "DISTINCT_CAP", 50)
    dates = [f"2024-01-{day:02d}" for day in range(1, 29)] + [f"2024-02-{day:02d}" for day in range(1, 29)]

    remembered = profiled(*({"ehr_id": "E1", "day": day} for day in [*dates[:40], "born 1990-05-01"]))
    forgotten = profiled(*({"ehr_id": "E1", "day": day} for day in [*dates, "born 1990-05-01"]))

    # With every value remembered, the regex that reads the last one is tried on all of them.
    proposal = key(remembered, "day").proposal
    assert proposal is not None
    assert proposal[:2] == ("date", r"(\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4})")
    # Past the cap it could not be vouched for: the key falls back to text, which holds everything.
    assert key(forgotten, "day").proposal == Candidate("str")


def test_counts_stay_exact_when_remembered_users_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "MAX_FINGERPRINTS", 3)
    snapshots = [
        {"ehr_id": f"E{user}", "city": "Kazan" if round_ % 2 else None, "age": user}
        for round_ in range(4)
        for user in range(10)
        for _ in range(2)  # each snapshot twice: the second is skipped by its fingerprint
    ]

    profile = profiled(*snapshots, max_users=2)

    assert profile.records == 80
    assert key(profile, "city").json_kinds == {"string": 40, "null": 40}
    assert key(profile, "age").json_kinds == {"integer": 80}
    assert key(profile, "ehr_id").records == 80


def test_a_repeated_snapshot_counts_in_every_total() -> None:
    same = {"ehr_id": "E1", "city": "Kazan", "age": None}
    profile = profiled(*(dict(same) for _ in range(5)), {"ehr_id": "E1", "city": "Ufa"})

    assert key(profile, "city").records == 6
    assert key(profile, "city").json_kinds == {"string": 6}
    assert key(profile, "age").json_kinds == {"null": 5}
    assert profile.records == 6


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_any_key_is_one_yaml_line_that_reads_back_as_itself(text: str) -> None:
    scalar = yaml_scalar(text)
    assert "\n" not in scalar
    assert yaml.safe_load(f"key: {scalar}") == {"key": text}


@given(st.lists(st.text(min_size=1), max_size=5))
def test_column_names_are_plain_identifiers_never_system_columns_nor_twice(keys: list[str]) -> None:
    taken: set[str] = set()
    names = [column_name_for(key, taken) for key in [*keys, "ehr_id", "uuid", *keys]]
    assert len(set(names)) == len(names)
    assert all(name.isascii() and name.isidentifier() and name == name.lower() for name in names)
    assert all(len(name) <= 63 and name not in SYSTEM_COLUMNS for name in names)


def test_no_module_of_the_assistant_imports_dagster() -> None:
    package = REPO_ROOT / "amplitude_pipeline" / "mapping"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [name for name in names if name.split(".")[0].startswith("dagster")], module


def test_nothing_it_imports_brings_dagster_along() -> None:
    # amplitude_pipeline/__init__.py itself still imports the definitions (another change removes
    # that): the package is entered without running it, so only what the assistant imports counts.
    code = (
        "import sys, types\n"
        "package = types.ModuleType('amplitude_pipeline')\n"
        f"package.__path__ = [{str(REPO_ROOT / 'amplitude_pipeline')!r}]\n"
        "sys.modules['amplitude_pipeline'] = package\n"
        "import amplitude_pipeline.mapping.cli\n"
        "print(sorted({name.split('.')[0] for name in sys.modules if name.startswith('dagster')}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
