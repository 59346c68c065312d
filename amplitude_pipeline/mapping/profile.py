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
- users (the identity value, else ``amplitude_id``) are *followed* (their last values kept, to
  judge "permanent or changeable") up to ``max_users`` at a time: past that, a user is followed
  only when a hash of its key falls under a threshold that halves whenever the table fills (a
  uniform sample of users, each followed from its first record), and the number of users is
  estimated from the sample;
- every other user is remembered by its last snapshot's fingerprint and *shape* (its keys and
  their values' JSON kinds, a few dozen bytes) only, up to :data:`MAX_FINGERPRINTS` users (then
  forgotten, as the loader's memo starts afresh).

Most events of a user repeat its snapshot (each carries the user's full snapshot). A record
whose snapshot has its user's last fingerprint (orjson's bytes of it, hashed: about a
microsecond) costs one count and nothing else: its values have been tried already, and the
records of a snapshot are added to the per-key counts of JSON kinds when the user's snapshot
changes (or at the end).
"""

from __future__ import annotations

import contextlib
import re
import zlib
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any, Final, NamedTuple

import orjson

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
MAX_FINGERPRINTS: Final = 500_000
MAX_COUNTED_KEYS: Final = (1 << 16) // 8 - 1
MAX_SEEN_PAIRS: Final = 200_000
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
_PREFERENCE_BITS: Final = tuple(
    _BIT[candidate]
    for candidate in sorted(
        (candidate for candidate in CANDIDATES if candidate.column_type is not None),
        key=lambda candidate: candidate == Candidate("str"),
    )
)
"""Column candidates in the order ``KeyProfile.proposal`` prefers them: base types, regexes, str."""

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


def _surviving(tests: tuple[_Test, ...], bits: int, value: Any, alive: int) -> int:
    """``alive`` without the candidates among ``bits`` that ``value`` does not convert under."""
    if not bits:
        return alive
    text: str | None = None
    for bit, convert, plausible in tests:
        if not bits & bit:
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
    return alive


_PLAIN_TESTS: Final = _tests_for(None)


@dataclass(slots=True)
class _KeyState:
    """What one key's values so far allow.

    Candidates are tried *lazily*: only those that decide the proposal (the most specific one
    standing, and the identity rule where it matters) are tried on each new value; the others
    stand untried while every distinct value is still remembered, and are tried on all of them
    at once (:meth:`_try_remembered`) when they come to matter, or when the values stop being
    remembered (:data:`DISTINCT_CAP`). A date key's new values are tried as dates, not also as
    datetimes, text and every regex. Past the cap only the leading candidate and str go on being
    tried (the others drop out): should the leading one fail later, the key falls back to str.
    """

    tests: tuple[_Test, ...]
    alive: int
    """Candidates no value has refuted (tried, or standing untried)."""
    always: int
    """Candidates tried on every value (the identity rule, where it is judged)."""
    first_source: str
    first_line: int
    tried: int = 0
    """Candidates every value so far has been tried on."""
    changed: int = 0
    repeats: int = 0
    has_value: bool = False
    seen_text: set[str] = field(default_factory=set)
    seen_other: set[tuple[type, Any]] = field(default_factory=set)
    overflow: bool = False
    live: tuple[_Test, ...] = ()
    live_for: int = -1
    """``live``: the tests of the candidates still tried past the cap, for ``alive`` = ``live_for``."""
    samples: list[str] = field(default_factory=list)

    def see(self, value: Any) -> None:
        """Try a value not known to be seen against the candidates that matter."""
        if self.overflow:
            self._try_forgotten(value)
            return
        kind = type(value)
        if kind is not str or value:
            self.has_value = True
        if len(self.samples) < SAMPLES_PER_KEY:
            self.samples.append(short_repr(value, SAMPLE_CHARACTERS))
        if kind is dict or kind is list:  # not remembered: every candidate is tried on it now
            self.alive = _surviving(self.tests, self.alive, value, self.alive)
        elif len(self.seen_text) + len(self.seen_other) >= DISTINCT_CAP:
            self._try_remembered(self.alive & ~self.tried)
            self.overflow = True
            self._try_forgotten(value)
            return
        else:
            if kind is str:
                self.seen_text.add(value)
            else:
                self.seen_other.add((kind, value))
            self.alive = _surviving(self.tests, self.alive & self.tried, value, self.alive)
        while needed := self._needed() & ~self.tried:
            self._try_remembered(needed)

    def _try_forgotten(self, value: Any) -> None:
        """Past the cap: values are no longer remembered, so a candidate not tried now could never
        be vouched for again. Only the leading candidate and str (the fallback) go on."""
        if self.live_for != self.alive:
            self.alive &= self._needed() | STR_BIT
            self.live = tuple(test for test in self.tests if test.bit & self.alive)
            self.live_for = self.alive
        self.alive = _surviving(self.live, self.alive, value, self.alive)
        if type(value) is not str or value:
            self.has_value = True

    def try_every_candidate(self) -> None:
        """Make ``alive`` exact: the candidates standing untried are tried on the remembered values
        (every value, as long as none was forgotten; past the cap only tried ones stand)."""
        self._try_remembered(self.alive & ~self.tried)

    def _needed(self) -> int:
        """The candidates the proposal depends on now: the most specific standing, and ``always``."""
        alive = self.alive
        for bit in _PREFERENCE_BITS:
            if alive & bit:
                return bit | (self.always & alive)
        return self.always & alive

    def _try_remembered(self, bits: int) -> None:
        alive = self.alive
        for text in self.seen_text:
            alive = _surviving(self.tests, bits & alive, text, alive)
        for _, value in self.seen_other:
            alive = _surviving(self.tests, bits & alive, value, alive)
        self.alive = alive
        self.tried |= bits

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
    """A followed user: its last values, for judging "permanent or changeable"."""

    hash: int
    snapshot: int | None = None
    """The user's last snapshot, packed (``PropertyProfiler._snapshot``)."""
    last: dict[str, Any] = field(default_factory=dict)
    """Per key the last non-null value."""
    before_empty: dict[str, Any] | None = None
    """Per key whose last value is ``""``: the last value before it that was not empty (for every
    candidate but str, an empty string is NULL, so that is the value to compare with)."""


_KIND_CODES: Final[dict[type, int]] = {kind: code for code, kind in enumerate(_JSON_KINDS)}
_KINDS_BY_CODE: Final = (*_JSON_KINDS.values(), "other")
_OTHER_KIND: Final = len(_JSON_KINDS)
_KIND_SLOTS: Final = 8
_RECORDS_BITS: Final = 32
_RECORDS_MASK: Final = (1 << _RECORDS_BITS) - 1
_FINGERPRINT_MASK: Final = (1 << 64) - 1
_SHAPE_SHIFT: Final = _RECORDS_BITS + 64


def _fingerprint(properties: dict[str, Any]) -> int | None:
    """A hash of the snapshot's exact JSON text (``1``, ``1.0`` and ``true`` differ), or ``None``
    when orjson cannot write it back."""
    try:
        return hash(orjson.dumps(properties)) & _FINGERPRINT_MASK
    except orjson.JSONEncodeError:
        return None


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
        self._users: dict[Any, _UserState] = {}
        self._threshold = _FULL_HASH
        self._fingerprints: dict[int, int] = {}
        """Users not followed (by the hash of the user): their last snapshot (``_snapshot``)."""
        self._key_codes: dict[str, int] = {}
        """Per key, where its counts start in ``_kind_counts``."""
        self._key_names: list[str] = []
        self._kind_counts: list[int] = []
        """Records per key and JSON kind (a snapshot's records are added when it is left)."""
        self._seen_pairs: set[tuple[str, Any]] = set()
        """(key, string) pairs whose string every candidate standing was tried on, and (key, None)."""

    def start_source(self, label: str) -> None:
        """Name the source whose records come next (for first sightings)."""
        self._source = label

    def observe_record(self, record: dict[str, Any], line_index: int) -> None:
        """One well-formed record: an object whose ``user_properties`` is an object."""
        properties: dict[str, Any] = record["user_properties"]
        self._records += 1
        fingerprint = _fingerprint(properties)
        user = self._user_of(properties, record.get("amplitude_id"))
        followed = self._users.get(user) if user is not None else None
        remembered_as = hash(user)
        last = followed.snapshot if followed is not None else self._fingerprints.get(remembered_as)
        if last is not None:
            if fingerprint is not None and (last >> _RECORDS_BITS) & _FINGERPRINT_MASK == fingerprint:
                if followed is not None:
                    followed.snapshot = last + 1
                else:
                    self._fingerprints[remembered_as] = last + 1
                return
            self._count_snapshot(last, self._kind_counts)
        elif followed is None and user is not None:
            followed = self._admit(user)
        snapshot = self._snapshot(properties, fingerprint, line_index)
        if snapshot is not None and user is not None:
            if followed is not None:
                followed.snapshot = snapshot
            else:
                if len(self._fingerprints) >= MAX_FINGERPRINTS:
                    for forgotten in self._fingerprints.values():
                        self._count_snapshot(forgotten, self._kind_counts)
                    self._fingerprints.clear()
                self._fingerprints[remembered_as] = snapshot
        else:
            if followed is not None:
                followed.snapshot = None
            else:
                self._fingerprints.pop(remembered_as, None)
            self._count_now(properties)
        self._see_values(properties, line_index, followed)

    def _snapshot(self, properties: dict[str, Any], fingerprint: int | None, line_index: int) -> int | None:
        """One record of this snapshot, packed in an int: the record count (low 32 bits), the
        fingerprint (64 bits), then the shape: per key its id and its value's JSON kind, 16 bits
        each. ``None`` when there is no fingerprint, or keys beyond the first 8,191."""
        key_codes = self._key_codes
        try:
            codes = self._shape_codes(properties, key_codes)
        except KeyError:
            for key in properties:
                if key not in key_codes:
                    self._register(key, line_index)
            try:
                codes = self._shape_codes(properties, key_codes)
            except KeyError:
                return None
        if fingerprint is None:
            return None
        shape = int.from_bytes(codes.tobytes() + b"\x01", "little")
        return 1 | fingerprint << _RECORDS_BITS | shape << _SHAPE_SHIFT

    @staticmethod
    def _shape_codes(properties: dict[str, Any], key_codes: dict[str, int]) -> array[int]:
        kinds = map(_KIND_CODES.get, map(type, properties.values()), repeat(_OTHER_KIND))
        return array("H", map(add, map(key_codes.__getitem__, properties), kinds))

    @staticmethod
    def _count_snapshot(snapshot: int, counts: list[int]) -> None:
        """Add a snapshot's records to the counts of its keys' JSON kinds (``counts`` by code)."""
        records = snapshot & _RECORDS_MASK
        shape = snapshot >> _SHAPE_SHIFT
        packed = shape.to_bytes((shape.bit_length() + 7) // 8, "little")[:-1]
        for code in memoryview(packed).cast("H"):
            counts[code] += records

    def _count_now(self, properties: dict[str, Any]) -> None:
        key_codes, counts = self._key_codes, self._kind_counts
        for key, value in properties.items():
            code = key_codes.get(key)
            if code is not None:  # else beyond the keys that are counted (thousands of keys)
                counts[code + _KIND_CODES.get(type(value), _OTHER_KIND)] += 1

    def _user_of(self, properties: dict[str, Any], amplitude_id: Any) -> Any:
        """The identity value (stripped, as the loader keys users), else the ``amplitude_id``."""
        if self.identity_key is not None:
            identity = properties.get(self.identity_key)
            if type(identity) is str:
                stripped = identity.strip()
                if stripped:
                    return stripped
            elif type(identity) is int:
                return str(identity)
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
                    self._count_snapshot(state.snapshot, self._kind_counts)
            self._users = kept

    def _register(self, key: str, line_index: int) -> _KeyState | None:
        """A key seen for the first time (``None``: a key no entry can name)."""
        if key not in self._key_codes and len(self._key_names) < MAX_COUNTED_KEYS:
            self._key_codes[key] = len(self._key_names) * _KIND_SLOTS
            self._key_names.append(key)
            self._kind_counts.extend([0] * _KIND_SLOTS)
        if key in self._unnameable or key in self._keys:
            return self._keys.get(key)
        if not key or len(key) > MAX_KEY_CHARACTERS:
            self._unnameable[key] = [self._source, line_index]
            return None
        value_map = self._value_maps.get(key)
        tests, impossible = _tests_for(value_map) if value_map else _PLAIN_TESTS
        always = IDENTITY_BIT if self.identity_key in (None, key) else 0
        alive = _ALL_BITS & ~impossible & ~(IDENTITY_BIT & ~always)
        if key == self.identity_key:
            alive &= IDENTITY_BIT  # never a column: only whether the load takes its values matters
        state = self._keys[key] = _KeyState(tests, alive, always, self._source, line_index)
        self._seen_pairs.add((key, None))
        return state

    def _see_values(self, properties: dict[str, Any], line_index: int, followed: _UserState | None) -> None:
        """Try the values not seen before against the candidates, and follow the user's values.

        For a user not followed, only the pairs not known to be seen are looked at: the set
        difference with the remembered (key, string) pairs runs in C, which leaves the numbers,
        flags and new strings of a snapshot (a first sighting's id and dates) to this loop.
        """
        items: Iterable[tuple[str, Any]] = properties.items()
        if followed is None:
            with contextlib.suppress(TypeError):  # an object or array among the values: look at all
                items = properties.items() - self._seen_pairs
        key_states = self._keys
        seen_pairs = self._seen_pairs
        for key, value in items:
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
                    if not state.overflow and len(seen_pairs) < MAX_SEEN_PAIRS:
                        seen_pairs.add((key, value))
            elif kind is dict or kind is list or (kind, value) not in state.seen_other:
                state.see(value)
            if followed is not None and state.alive:
                _follow(followed, key, value, state)

    def profile(self) -> Profile:
        """What the records so far say (the profiler can go on observing afterwards)."""
        kind_counts = list(self._kind_counts)
        for last in self._fingerprints.values():
            self._count_snapshot(last, kind_counts)
        for state in self._users.values():
            if state.snapshot is not None:
                self._count_snapshot(state.snapshot, kind_counts)
        counted = {
            key: {
                kind: count
                for kind, count in zip(_KINDS_BY_CODE, kind_counts[code : code + _KIND_SLOTS], strict=False)
                if count
            }
            for key, code in self._key_codes.items()
        }
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

    def _key_profile(self, key: str, state: _KeyState, counted: dict[str, dict[str, int]]) -> KeyProfile:
        state.try_every_candidate()
        kinds = counted.get(key, {})
        distinct = len(state.seen_text) + len(state.seen_other)
        enumeration = None
        if not state.overflow and distinct <= ENUMERATION_LIMIT:
            values = [*state.seen_text, *(value for _, value in state.seen_other)]
            enumeration = tuple(sorted(short_repr(value, SAMPLE_CHARACTERS) for value in values))
        return KeyProfile(
            key=key,
            records=sum(kinds.values()),
            json_kinds=kinds,
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
