"""One pass over records that learns, per ``user_properties`` key, what its mapping entry needs.

Per key it keeps: how many records carry it and with which JSON kinds; its distinct values
(exactly up to :data:`DISTINCT_CAP`, then "at least"); a few samples; which *candidates* every
value so far converts under; and under which candidates some user's non-NULL value changed.

A candidate is one way to map the key: a column type (CONTRACT §5's bool, int, float, date,
datetime, str), a type with one of a few regexes (``'^\\s*(\\d+)'``: ``"30 лет"`` → int), or the
identity rule. "Converts" is decided by the loader's own converters
(:func:`~amplitude_pipeline.transform.mapping.build_converter`, ``convert_identity``), so a
proposal fits exactly what the load accepts. Candidates only ever drop out, so each distinct
value is tried once, against the candidates still standing.

Memory does not grow with the number of records:

- distinct values are remembered up to :data:`DISTINCT_CAP` per key (beyond it the count says
  "at least" and new values are tried every time they come);
- users (the identity value, else ``amplitude_id``) are followed up to ``max_users`` at a time:
  past that, a user is followed only when a hash of its key falls under a threshold that halves
  whenever the table fills (a uniform sample of users, each followed from its first record), so
  "permanent or changeable" is judged on that sample and the number of users is estimated;
- the JSON kinds of a followed user's values are counted once per snapshot, times the records
  that carried it.

Work per record is one shape count; a followed user whose snapshot equals its previous one costs
a dict comparison and nothing else, as in the loader's memo.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from amplitude_pipeline.text import short_repr
from amplitude_pipeline.transform.casts import CASTS, ColumnType, ConversionFailure, json_text
from amplitude_pipeline.transform.mapping import Converter, build_converter
from amplitude_pipeline.transform.records import convert_identity

__all__ = [
    "CANDIDATES",
    "DISTINCT_CAP",
    "MAX_KEY_CHARACTERS",
    "Candidate",
    "KeyProfile",
    "Profile",
    "PropertyProfiler",
    "UnnameableKey",
]

DISTINCT_CAP: Final = 10_000
SAMPLES_PER_KEY: Final = 3
SAMPLE_CHARACTERS: Final = 40
ENUMERATION_LIMIT: Final = 12
DEFAULT_MAX_USERS: Final = 20_000
MAX_KEY_CHARACTERS: Final = 1_000
"""A longer key is not a property name but damage: no mapping entry is proposed for it."""

_FULL_HASH: Final = 1 << 32


class Candidate(NamedTuple):
    """One way to map a key: a column type, optionally with a regex, or the identity rule."""

    column_type: ColumnType | None
    """``None`` for the identity rule (``convert_identity``)."""
    regex: str | None = None
    plausible: re.Pattern[str] | None = None
    """For a regex: the whole string form must look like this too. ``'^\\s*(\\d+)'`` turns the
    version ``"3.8.0"`` into 3; only values whose rest holds no more digits count as fitting."""

    @property
    def label(self) -> str:
        if self.column_type is None:
            return "identity"
        return self.column_type if self.regex is None else f"{self.column_type} with regex {self.regex}"


BASE_TYPES: Final[tuple[ColumnType, ...]] = ("bool", "int", "float", "date", "datetime", "str")
_DATE_TEXT: Final = r"\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4}"
CANDIDATES: Final[tuple[Candidate, ...]] = (
    *(Candidate(column_type) for column_type in BASE_TYPES),
    Candidate("int", r"^\s*(\d+)", re.compile(r"\s*\d+\D*")),
    Candidate("int", r"^\s*([+-]?\d+)", re.compile(r"\s*[+-]?\d+\D*")),
    Candidate("float", r"^\s*(\d+(?:\.\d+)?)", re.compile(r"\s*\d+(?:\.\d+)?\D*")),
    Candidate("float", r"^\s*([+-]?\d+(?:\.\d+)?)", re.compile(r"\s*[+-]?\d+(?:\.\d+)?\D*")),
    Candidate("date", rf"({_DATE_TEXT})", re.compile(rf"\D*(?:{_DATE_TEXT})\D*")),
    Candidate(None),
)
"""In order of preference: the base types from the most specific, then the regexes (proposed only
for a key that fits no base type but str), then the identity rule (never a column)."""
_BIT: Final = {candidate: 1 << index for index, candidate in enumerate(CANDIDATES)}
STR_BIT: Final = _BIT[Candidate("str")]
IDENTITY_BIT: Final = _BIT[Candidate(None)]
_ALL_BITS: Final = (1 << len(CANDIDATES)) - 1
_TYPED_BITS: Final = _ALL_BITS & ~STR_BIT
"""Candidates for which an empty string is NULL (every one but str)."""

_JSON_KINDS: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
}
_MISSING: Final = object()


class _Test(NamedTuple):
    bit: int
    convert: Converter
    plausible: re.Pattern[str] | None


def _tests_for(value_map: dict[str, Any] | None) -> tuple[tuple[_Test, ...], int]:
    """The converters of every candidate (a column's ``value_map`` applied, as the loader would),
    and the bits of the candidates that cannot exist (a value_map target of another type)."""
    tests = []
    impossible = 0
    for candidate in CANDIDATES:
        bit = _BIT[candidate]
        if candidate.column_type is None:
            tests.append(_Test(bit, convert_identity, None))
            continue
        pattern = re.compile(candidate.regex) if candidate.regex is not None else None
        try:
            if pattern is None and not value_map:
                convert = CASTS[candidate.column_type]
            else:
                convert = build_converter(candidate.column_type, pattern, value_map)
        except ConversionFailure:
            impossible |= bit
            continue
        tests.append(_Test(bit, convert, candidate.plausible))
    return tuple(tests), impossible


_PLAIN_TESTS: Final = _tests_for(None)


@dataclass(slots=True)
class _KeyState:
    tests: tuple[_Test, ...]
    alive: int
    first_source: str
    first_line: int
    changed: int = 0
    repeats: int = 0
    has_value: bool = False
    seen_text: set[str] = field(default_factory=set)
    seen_other: set[tuple[type, Any]] = field(default_factory=set)
    overflow: bool = False
    samples: list[str] = field(default_factory=list)

    def see(self, value: Any) -> None:
        """Try a value not known to be seen against the candidates still standing."""
        kind = type(value)
        if kind is str:
            if len(self.seen_text) + len(self.seen_other) < DISTINCT_CAP:
                self.seen_text.add(value)
            else:
                self.overflow = True
            if value:
                self.has_value = True
        elif kind is dict or kind is list:
            self.has_value = True
        else:
            if len(self.seen_text) + len(self.seen_other) < DISTINCT_CAP:
                self.seen_other.add((kind, value))
            else:
                self.overflow = True
            self.has_value = True
        if len(self.samples) < SAMPLES_PER_KEY:
            self.samples.append(short_repr(value, SAMPLE_CHARACTERS))
        alive = self.alive
        text: str | None = None
        for bit, convert, plausible in self.tests:
            if not alive & bit:
                continue
            if plausible is not None and value != "":
                if text is None:
                    try:
                        text = json_text(value)
                    except ConversionFailure:
                        alive &= ~bit
                        continue
                if plausible.fullmatch(text) is None:
                    alive &= ~bit
                    continue
            try:
                convert(value)
            except ConversionFailure:
                alive &= ~bit
        self.alive = alive

    def compare(self, before: Any, after: Any, bits: int) -> None:
        """A user's earlier and later value differ as JSON: note the candidates under which the
        column values differ too (``"yes"`` and ``true`` are one bool)."""
        self.repeats += 1
        pending = self.alive & bits & ~self.changed
        if not pending:
            return
        for bit, convert, _ in self.tests:
            if pending & bit:
                try:
                    old, new = convert(before), convert(after)
                except ConversionFailure:
                    continue
                if old is not None and new is not None and old != new:
                    self.changed |= bit


@dataclass(slots=True)
class _UserState:
    hash: int
    snapshot: dict[str, Any] | None = None
    kinds: tuple[type, ...] = ()
    records: int = 0
    """Records of this user carrying ``snapshot``, not yet in the per-key counts."""
    last: dict[str, Any] = field(default_factory=dict)
    """Per key the last non-null value."""
    before_empty: dict[str, Any] | None = None
    """Per key whose last value is ``""``: the last value before it that was not empty (for every
    candidate but str, an empty string is NULL, so that is the value to compare with)."""


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


@dataclass(frozen=True, slots=True)
class UnnameableKey:
    """A key no mapping entry can name (empty, or longer than :data:`MAX_KEY_CHARACTERS`)."""

    key: str
    length: int
    records: int
    first_source: str
    first_line: int

    @property
    def reason(self) -> str:
        if not self.length:
            return "an empty key cannot be named in the mapping (a source key must not be empty)"
        return (
            f"a key of {self.length:,} characters is too long to name in the mapping "
            f"(at most {MAX_KEY_CHARACTERS:,})"
        )


@dataclass(frozen=True, slots=True)
class KeyProfile:
    """What the sources say about one key."""

    key: str
    records: int
    """Records that carry the key (null included)."""
    json_kinds: dict[str, int]
    """Records per JSON kind of its value (``string``, ``integer``, ``float``, ``boolean``,
    ``null``, ``object``, ``array``)."""
    distinct: int
    distinct_is_lower_bound: bool
    has_value: bool
    """Some record holds a value that is neither null nor an empty string."""
    samples: tuple[str, ...]
    enumeration: tuple[str, ...] | None
    """Every distinct value (shortened) when there are at most a dozen, else ``None``."""
    fitting: tuple[Candidate, ...]
    changing: tuple[Candidate, ...]
    """Candidates under which some followed user's non-NULL value changed."""
    repeats: int
    """How often a followed user's value was compared with its previous one."""
    first_source: str
    first_line: int

    def fits(self, candidate: Candidate) -> bool:
        return candidate in self.fitting

    @property
    def proposal(self) -> Candidate | None:
        """CONTRACT §9: the most specific base type under which every value converts; only when
        that is str, a regex that makes a more specific type fit; ``None`` when nothing fits.
        A key that never held a value (only null or ``""``) is str: nothing says otherwise."""
        if not self.has_value and self.fits(Candidate("str")):
            return Candidate("str")
        str_only = Candidate("str")
        for candidate in CANDIDATES:
            if candidate.column_type is not None and candidate != str_only and self.fits(candidate):
                return candidate
        return str_only if self.fits(str_only) else None

    def changes_under(self, candidate: Candidate) -> bool:
        return candidate in self.changing


@dataclass(frozen=True, slots=True)
class Profile:
    """The result of a pass: every key in order of first appearance."""

    records: int
    keys: tuple[KeyProfile, ...]
    unnameable: tuple[UnnameableKey, ...]
    identity_key: str | None
    users_followed: int
    users_estimate: int
    users_sampled: bool
    identity_candidates: tuple[str, ...]
    """Keys that look like a user's id (without an identity key): identity-convertible, one value
    per ``amplitude_id``, a different value for (nearly) every user; most common first."""

    def key(self, key: str) -> KeyProfile | None:
        return next((profile for profile in self.keys if profile.key == key), None)


class PropertyProfiler:
    """Feed it records (:meth:`observe_record`), then ask for the :meth:`profile`.

    ``identity_key``: the key whose value is the user (else ``amplitude_id`` is); ``value_maps``:
    per key, the value_map its current column applies (``propose --against``), so that candidates
    are judged as the loader would convert with it.
    """

    def __init__(
        self,
        identity_key: str | None = None,
        value_maps: Mapping[str, dict[str, Any]] | None = None,
        *,
        max_users: int = DEFAULT_MAX_USERS,
    ) -> None:
        self.identity_key = identity_key
        self._value_maps = dict(value_maps or {})
        self._max_users = max_users
        self._records = 0
        self._source = ""
        self._keys: dict[str, _KeyState] = {}
        self._unnameable: dict[str, list[Any]] = {}
        self._key_kinds: dict[str, dict[type, int]] = {}
        self._users: dict[Any, _UserState] = {}
        self._threshold = _FULL_HASH

    def start_source(self, label: str) -> None:
        """Name the source whose records come next (for first sightings)."""
        self._source = label

    def observe_record(self, record: dict[str, Any], line_index: int) -> None:
        """One well-formed record: an object whose ``user_properties`` is an object."""
        properties: dict[str, Any] = record["user_properties"]
        self._records += 1
        user = self._user_of(properties, record.get("amplitude_id"))
        state = self._users.get(user) if user is not None else None
        if state is None and user is not None:
            state = self._admit(user)
        if state is None:
            self._see_values(properties, line_index, None)
            self._count_kinds(properties, 1)
            return
        snapshot = state.snapshot
        kinds = tuple(map(type, properties.values()))
        if snapshot is not None:
            if state.kinds == kinds and snapshot == properties:
                state.records += 1
                return
            self._count_kinds(snapshot, state.records)
        state.snapshot, state.kinds, state.records = properties, kinds, 1
        self._see_values(properties, line_index, state)

    def _user_of(self, properties: dict[str, Any], amplitude_id: Any) -> Any:
        if self.identity_key is not None:
            try:
                identity = convert_identity(properties.get(self.identity_key))
            except ConversionFailure:
                identity = None
            if identity is not None:
                return identity
        return amplitude_id if type(amplitude_id) is int else None

    def _admit(self, user: Any) -> _UserState | None:
        text = user if type(user) is str else f"#{user}"
        user_hash = zlib.crc32(text.encode("utf-8", "surrogatepass"))
        if user_hash >= self._threshold:
            return None
        state = _UserState(user_hash)
        self._users[user] = state
        if len(self._users) > self._max_users:
            self._halve_the_sample()
        return self._users.get(user)

    def _halve_the_sample(self) -> None:
        while len(self._users) > self._max_users:
            self._threshold //= 2
            kept = {}
            for user, state in self._users.items():
                if state.hash < self._threshold:
                    kept[user] = state
                elif state.snapshot is not None:
                    self._count_kinds(state.snapshot, state.records)
            self._users = kept

    def _count_kinds(
        self, properties: dict[str, Any], records: int, into: dict[str, dict[type, int]] | None = None
    ) -> None:
        """Add ``records`` records of this snapshot to the per-key counts of JSON kinds."""
        key_kinds = self._key_kinds if into is None else into
        for key, value in properties.items():
            per_kind = key_kinds.get(key)
            if per_kind is None:
                per_kind = key_kinds[key] = {}
            kind = type(value)
            per_kind[kind] = per_kind.get(kind, 0) + records

    def _register(self, key: str, line_index: int) -> _KeyState | None:
        """A key seen for the first time (``None``: a key no entry can name)."""
        if key in self._unnameable:
            return None
        if not key or len(key) > MAX_KEY_CHARACTERS:
            self._unnameable[key] = [self._source, line_index]
            return None
        value_map = self._value_maps.get(key)
        tests, impossible = _tests_for(value_map) if value_map else _PLAIN_TESTS
        state = self._keys[key] = _KeyState(tests, _ALL_BITS & ~impossible, self._source, line_index)
        return state

    def _see_values(self, properties: dict[str, Any], line_index: int, user: _UserState | None) -> None:
        key_states = self._keys
        for key, value in properties.items():
            state = key_states.get(key)
            if state is None:
                state = self._register(key, line_index)
                if state is None:
                    continue
            if value is None or not state.alive:
                continue
            kind = type(value)
            if kind is str:
                if value not in state.seen_text:
                    state.see(value)
            elif kind is dict or kind is list or (kind, value) not in state.seen_other:
                state.see(value)
            if user is not None and state.alive:
                _follow(user, key, value, state)

    def profile(self) -> Profile:
        """What the records so far say (the profiler can go on observing afterwards)."""
        counted = {key: dict(per_kind) for key, per_kind in self._key_kinds.items()}
        for state in self._users.values():
            if state.snapshot is not None:
                self._count_kinds(state.snapshot, state.records, counted)
        keys = tuple(self._key_profile(key, state, counted) for key, state in self._keys.items())
        unnameable = tuple(
            UnnameableKey(key, len(key), sum(counted.get(key, {}).values()), first_source, first_line)
            for key, (first_source, first_line) in self._unnameable.items()
        )
        sampled = self._threshold < _FULL_HASH
        followed = len(self._users)
        estimate = followed if not sampled else round(followed * _FULL_HASH / self._threshold)
        return Profile(
            records=self._records,
            keys=keys,
            unnameable=unnameable,
            identity_key=self.identity_key,
            users_followed=followed,
            users_estimate=estimate,
            users_sampled=sampled,
            identity_candidates=self._identity_candidates(keys) if self.identity_key is None else (),
        )

    def _key_profile(self, key: str, state: _KeyState, counted: dict[str, dict[type, int]]) -> KeyProfile:
        kinds = counted.get(key, {})
        distinct = len(state.seen_text) + len(state.seen_other)
        enumeration = None
        if not state.overflow and distinct <= ENUMERATION_LIMIT:
            values = [*state.seen_text, *(value for _, value in state.seen_other)]
            enumeration = tuple(short_repr(value, SAMPLE_CHARACTERS) for value in values)
        return KeyProfile(
            key=key,
            records=sum(kinds.values()),
            json_kinds={_JSON_KINDS.get(kind, kind.__name__): count for kind, count in kinds.items()},
            distinct=distinct,
            distinct_is_lower_bound=state.overflow,
            has_value=state.has_value,
            samples=tuple(state.samples),
            enumeration=enumeration,
            fitting=tuple(candidate for candidate in CANDIDATES if state.alive & _BIT[candidate]),
            changing=tuple(candidate for candidate in CANDIDATES if state.changed & _BIT[candidate]),
            repeats=state.repeats,
            first_source=state.first_source,
            first_line=state.first_line,
        )

    def _identity_candidates(self, keys: tuple[KeyProfile, ...]) -> tuple[str, ...]:
        """Keys that could hold the EHR id, judged per ``amplitude_id`` on the followed users."""
        identity = Candidate(None)
        found = []
        for profile in keys:
            if not profile.has_value or not profile.fits(identity) or profile.changes_under(identity):
                continue
            proposal = profile.proposal
            if proposal is None or proposal.regex is not None or proposal.column_type not in ("int", "str"):
                continue  # dates, flags and measurements are no ids
            values = []
            for user in self._users.values():
                value = user.last.get(profile.key, _MISSING)
                if value is _MISSING:
                    continue
                converted = convert_identity(value)
                if converted is not None:
                    values.append(converted)
            if len(values) >= 2 and len(set(values)) >= 0.9 * len(values):
                found.append(profile)
        return tuple(profile.key for profile in sorted(found, key=lambda profile: -profile.records))


def _follow(user: _UserState, key: str, value: Any, state: _KeyState) -> None:
    """Compare a followed user's value with its previous non-null one, per candidate kind.

    For str an empty string is a value; for every other candidate it is NULL, so there the value
    before an empty string is the one to compare with.
    """
    last = user.last
    previous = last.get(key, _MISSING)
    if value == "" and type(value) is str:
        if previous is not _MISSING and not (type(previous) is str and previous == ""):
            state.compare(previous, value, STR_BIT)
            if user.before_empty is None:
                user.before_empty = {}
            user.before_empty[key] = previous
        last[key] = value
        return
    if previous is _MISSING:
        last[key] = value
        return
    if type(previous) is str and previous == "":
        state.compare(previous, value, STR_BIT)
        before = user.before_empty.pop(key, _MISSING) if user.before_empty else _MISSING
        if before is not _MISSING and not _same(before, value):
            state.compare(before, value, _TYPED_BITS)
        last[key] = value
        return
    if _same(previous, value):
        state.repeats += 1
        return
    state.compare(previous, value, _ALL_BITS)
    last[key] = value
