"""Deterministic generation of Amplitude raw events, as the Export API returns them.

Everything here is a pure function of a :class:`SimulatorConfig`: the same config and day give
byte-identical lines in any process (randomness comes from ``random.Random`` instances seeded
with a BLAKE2 digest of a textual scope, never from ``hash()``, so ``PYTHONHASHSEED`` does not
matter).

The model:

* **Users** — a stable population built from the seed. Each user is built from their own
  random stream, so growing ``users`` keeps the existing users unchanged. About 85 % carry an
  ``ehr_id``; the rest are anonymous (no ``ehr_id`` key, or ``"ehr_id": null``) and are only
  identified by ``amplitude_id``.
* **Property versions** — each user has 1-3 versions of their changeable properties. Versions
  switch at fixed instants inside the *history window* (``history_start`` +
  ``history_days``); before it the first version applies, after it the last. Every event
  carries the complete ``user_properties`` snapshot current at its ``event_time``, as
  Amplitude does.
* **Layout** — a day's event count (exactly ``events_per_day``) is spread over the 24 UTC
  hours with a Moscow-shaped daily curve; some hours are split into 2-3 parts, the way
  Amplitude splits big hours into ``..._{H}#{n}.json.gz`` files. The layout is computed
  without generating events, so the server can plan an archive cheaply.
* **Events** — generated lazily, one archive file (hour part) at a time, each part from its own
  random stream and its own slice of the hour, ordered by ``server_received_time``.
  ``event_time`` precedes it by a client-side delay, so it is only *roughly* increasing inside
  a file, but every timestamp stays inside its day and hour.

The ``user_properties`` keys used are exactly those known to ``field_mappings.yaml``; the
values use every representation the mapping's conversion rules accept (``'м'``/``'male'``/``'M'``,
``YYYY-MM-DD`` and ``DD.MM.YYYY`` dates, ``"34 years"``, ``"yes"``/``0``/``true`` booleans, an
empty-string weight, nulls, missing keys).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import orjson

__all__ = [
    "EventTimes",
    "HourFile",
    "PartLayout",
    "PropertyVersion",
    "SimulatedUser",
    "SimulatorConfig",
    "build_event",
    "day_files",
    "day_layout",
    "expected_lines",
    "expected_week_lines",
    "hour_files",
    "iter_day_files",
    "iter_part_lines",
    "member_name",
    "population",
    "random_event_types",
    "scoped_random",
]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that determines the simulated project's data (and two server-side rules).

    ``too_much_data_hours_over`` and ``too_much_data_hours`` do not change the data; they make
    the server answer 400 "exceeds 4GB" for a request spanning more than that many hours, or
    whose window contains one of those ``(day, hour)`` pairs, so that a client's window
    splitting can be tested deterministically.
    """

    seed: int = 42
    project_id: int = 187520
    users: int = 200
    events_per_day: int = 2000
    empty_days: frozenset[date] = frozenset()
    #: Fraction of (non-trivial) hours split into several archive files.
    multi_part_hour_fraction: float = 0.25
    max_parts_per_hour: int = 3
    #: Property versions switch at instants inside [history_start, history_start + history_days).
    history_start: date = date(2024, 1, 1)
    history_days: int = 56
    too_much_data_hours_over: int | None = None
    too_much_data_hours: frozenset[tuple[date, int]] = frozenset()

    def __post_init__(self) -> None:
        # Accept any iterable for the set-valued fields; store frozensets so the config hashes.
        object.__setattr__(self, "empty_days", frozenset(self.empty_days))
        object.__setattr__(self, "too_much_data_hours", frozenset(self.too_much_data_hours))
        if self.users < 1:
            raise ValueError("users must be at least 1")
        if self.events_per_day < 0:
            raise ValueError("events_per_day must not be negative")
        if not 0.0 <= self.multi_part_hour_fraction <= 1.0:
            raise ValueError("multi_part_hour_fraction must be within [0, 1]")
        if self.max_parts_per_hour < 1:
            raise ValueError("max_parts_per_hour must be at least 1")
        if not 1 <= self.history_days <= 364:
            # Birthdays are placed relative to the window; a window of a year or more could not
            # keep "no birthday inside the window" for users whose age does not change.
            raise ValueError("history_days must be within [1, 364]")
        if self.too_much_data_hours_over is not None and self.too_much_data_hours_over < 1:
            raise ValueError("too_much_data_hours_over must be at least 1")
        for day, hour in self.too_much_data_hours:
            if not isinstance(day, date) or not 0 <= hour <= 23:
                raise ValueError(f"too_much_data_hours: invalid (day, hour) pair {(day, hour)!r}")


@dataclass(frozen=True, slots=True)
class HourFile:
    """One archive member: the events of one part of one UTC hour."""

    day: date
    hour: int
    part: int
    #: Each line is one serialized JSON event, without a trailing newline.
    lines: list[bytes]

    def member_name(self, project_id: int) -> str:
        """Archive member name, e.g. ``187520/187520_2024-01-08_5#0.json.gz``."""
        return member_name(project_id, self.day, self.hour, self.part)


def member_name(project_id: int, day: date, hour: int, part: int) -> str:
    """Amplitude's archive member name; the hour is not zero-padded, ``part`` counts from 0."""
    return f"{project_id}/{project_id}_{day.isoformat()}_{hour}#{part}.json.gz"


class PartLayout(NamedTuple):
    """One part of one hour: how many events it holds and the slice of the hour they fall in.

    Parts of an hour cover consecutive slices (``[received_from_ms, received_to_ms)``, offsets
    of ``server_received_time`` from the start of the hour), so each part can be generated on
    its own, and the hour's parts in part order are in received-time order.
    """

    hour: int
    part: int
    events: int
    received_from_ms: int
    received_to_ms: int


class City(NamedTuple):
    ru: str
    en: str
    region: str
    country: str
    lat: float
    lng: float


class DeviceProfile(NamedTuple):
    platform: str
    os_name: str
    os_version: str
    device_type: str
    device_family: str | None
    device_brand: str | None
    device_manufacturer: str | None
    device_model: str | None
    device_carrier: str | None
    library: str


@dataclass(frozen=True, slots=True)
class PropertyVersion:
    """One version of a user's properties and the instant it starts to apply."""

    #: ``None`` for the first version (it applies since the beginning of time).
    valid_from: datetime | None
    #: What changed relative to the previous version (empty for the first version).
    changes: tuple[str, ...]
    city: City
    app_version: str
    #: The complete ``user_properties`` snapshot events carry while this version applies.
    #: Shared by all events: treat it as read-only.
    user_properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SimulatedUser:
    """One simulated Amplitude user: identity, device, and their property versions."""

    index: int
    amplitude_id: int
    user_id: str | None
    ehr_id: str | None
    device_id: str
    device: DeviceProfile
    ip_address: str
    language: str
    user_creation_time: str
    start_version: str
    #: Relative event frequency (heavy-tailed: a few users produce many events).
    activity: float
    #: Offset that places this user's 30-minute session buckets.
    session_phase_ms: int
    versions: tuple[PropertyVersion, ...]
    #: ``valid_from`` of versions[1:] as epoch milliseconds, for bisection.
    switch_ms: tuple[int, ...] = field(repr=False)

    def version_at(self, when: datetime) -> PropertyVersion:
        """The property version current at ``when`` (an aware or naive-UTC datetime)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return self._version_at_ms(int(when.timestamp() * 1000))

    def properties_at(self, when: datetime) -> dict[str, Any]:
        """A copy of the ``user_properties`` snapshot current at ``when``."""
        return dict(self.version_at(when).user_properties)

    def _version_at_ms(self, epoch_ms: int) -> PropertyVersion:
        return self.versions[bisect.bisect_right(self.switch_ms, epoch_ms)]


# --------------------------------------------------------------------------------------------
# Deterministic randomness


def scoped_random(seed: int, *scope: object) -> random.Random:
    """An independent random stream for ``scope``, stable across processes and Python runs."""
    key = "\x1f".join([str(seed), *(str(part) for part in scope)]).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big"))


def _uuid4(rng: random.Random) -> str:
    """A uuid4-shaped (version and variant bits set) string drawn from ``rng``."""
    value = rng.getrandbits(128)
    value = (value & ~(0xF000 << 64)) | (0x4000 << 64)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _epoch_ms(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp()) * 1000


def _format_ms(epoch_ms: int) -> str:
    """Amplitude's timestamp format, ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, millisecond data)."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{epoch_ms % 1000:03d}000"


# --------------------------------------------------------------------------------------------
# Reference data

_CITIES: tuple[City, ...] = (
    City("Москва", "Moscow", "Moscow", "Russia", 55.7558, 37.6173),
    City("Санкт-Петербург", "Saint Petersburg", "St.-Petersburg", "Russia", 59.9311, 30.3609),
    City("Казань", "Kazan", "Tatarstan Republic", "Russia", 55.7961, 49.1064),
    City("Новосибирск", "Novosibirsk", "Novosibirsk Oblast", "Russia", 55.0084, 82.9357),
    City("Екатеринбург", "Yekaterinburg", "Sverdlovsk Oblast", "Russia", 56.8389, 60.6057),
    City("Нижний Новгород", "Nizhniy Novgorod", "Nizhny Novgorod Oblast", "Russia", 56.2965, 43.9361),
    City("Краснодар", "Krasnodar", "Krasnodar Krai", "Russia", 45.0355, 38.9753),
    City("Самара", "Samara", "Samara Oblast", "Russia", 53.1959, 50.1002),
    City("Алматы", "Almaty", "Almaty", "Kazakhstan", 43.2220, 76.8512),
)
# Moscow and Saint Petersburg dominate, as they would for a Russian telemedicine app.
_CITY_WEIGHTS = (40, 18, 7, 6, 6, 5, 5, 4, 3)

# (profile, weight): iPhones and Android phones dominate, some patients use the web app.
# fmt: off
_DEVICES: tuple[tuple[DeviceProfile, int], ...] = (
    (DeviceProfile("iOS", "ios", "17.2.1", "Apple iPhone 14", "Apple iPhone", "Apple", "Apple",
                   "iPhone15,2", "MTS", "amplitude-swift/1.4.3"), 30),
    (DeviceProfile("iOS", "ios", "16.7.4", "Apple iPhone 11", "Apple iPhone", "Apple", "Apple",
                   "iPhone12,1", "Beeline", "amplitude-swift/1.4.3"), 12),
    (DeviceProfile("Android", "android", "14", "Samsung Galaxy S23", "Samsung Phone", "Samsung",
                   "samsung", "SM-S911B", "MegaFon", "amplitude-android/1.16.8"), 18),
    (DeviceProfile("Android", "android", "13", "Xiaomi Redmi Note 12", "Xiaomi Phone", "Xiaomi",
                   "Xiaomi", "23021RAA2Y", "Tele2", "amplitude-android/1.16.8"), 20),
    (DeviceProfile("Web", "Chrome", "120", "Windows", "Windows", None, None, None, None,
                   "amplitude-ts/2.11.3"), 12),
    (DeviceProfile("Web", "Safari", "17.2", "Mac", "Mac", None, None, None, None,
                   "amplitude-ts/2.11.3"), 8),
)
# fmt: on

_APP_VERSIONS = ("3.7.2", "3.8.0", "3.9.1", "4.0.0", "4.1.2", "4.2.0")

# (initial_utm_source, _medium, _campaign, _term, _content, initial_referrer). Amplitude's SDKs
# write the literal "EMPTY" when a first-touch attribute was absent.
_ACQUISITION_CHANNELS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY"),
    ("yandex", "cpc", "checkup_2023", "терапевт онлайн", "ad_v2", "https://yandex.ru/"),
    ("google", "cpc", "brand", "doctor online", "search_a", "https://www.google.com/"),
    ("vk", "social", "telemed_launch", "EMPTY", "story", "https://vk.com/"),
    ("telegram", "messenger", "referral", "EMPTY", "EMPTY", "EMPTY"),
    ("EMPTY", "EMPTY", "EMPTY", "EMPTY", "EMPTY", "https://www.google.com/"),
)

_SUBSCRIPTION_STATUSES = ("free", "trial", "active", "cancelled")
_PREMIUM_STATUSES = frozenset({"trial", "active"})
_TOGGLED_STATUS = {"free": "active", "trial": "cancelled", "active": "cancelled", "cancelled": "active"}

# UTC hour weights: a Moscow (UTC+3) audience, quiet at night, busiest in the afternoon.
_HOUR_WEIGHTS = (
    0.6, 0.4, 0.35, 0.5, 1.2, 2.2, 3.2, 4.0, 4.6, 4.8, 4.9, 4.8,
    4.6, 4.7, 4.9, 5.0, 5.1, 5.0, 4.6, 3.8, 2.8, 1.8, 1.2, 0.9,
)  # fmt: skip

# --------------------------------------------------------------------------------------------
# The user population


@dataclass(slots=True)
class _Facts:
    """The mutable facts a user's changeable properties are rendered from."""

    age: int
    city: City
    app_index: int
    status: str
    notifications: bool
    weight: float
    height: int


@dataclass(frozen=True, slots=True)
class _Style:
    """How one user's SDK/app writes values (stable across the user's versions)."""

    ehr_mode: str  # "value" | "absent" | "null"
    age: str  # "int" | "years" | "str"
    premium: str  # "bool" | "yes_no" | "Yes_No" | "int01" | "str01" | "true_false"
    city_lang: str  # "ru" | "en"
    notifications_as_string: bool
    missing: frozenset[str]
    nulls: frozenset[str]
    blanks: frozenset[str]


_PREMIUM_RENDERINGS: dict[str, tuple[Any, Any]] = {
    "bool": (True, False),
    "yes_no": ("yes", "no"),
    "Yes_No": ("Yes", "No"),
    "int01": (1, 0),
    "str01": ("1", "0"),
    "true_false": ("TRUE", "false"),
}

_OPTIONAL_CHANGEABLE = (
    "age", "city", "language", "subscription_status", "premium", "notifications_enabled",
    "weight", "height",
)  # fmt: skip
_OPTIONAL_PERMANENT = (
    "gender", "birth_date", "registration_date", "initial_utm_source", "initial_utm_medium",
    "initial_utm_campaign", "initial_utm_term", "initial_utm_content", "initial_referrer",
)  # fmt: skip
# Keys an anonymous (not logged-in) user never has: they come from the patient's profile.
_PROFILE_ONLY_KEYS = frozenset({"gender", "birth_date", "registration_date", "age", "weight", "height"})


def _visible(style: _Style, key: str) -> bool:
    """Whether ``key`` is rendered with a real value (not missing, null or empty)."""
    return key not in style.missing and key not in style.nulls and key not in style.blanks


def _render_changeable(style: _Style, facts: _Facts) -> dict[str, Any]:
    premium = facts.status in _PREMIUM_STATUSES
    rendered_age: Any = {"int": facts.age, "years": f"{facts.age} years", "str": str(facts.age)}[style.age]
    notifications: Any = facts.notifications
    if style.notifications_as_string:
        notifications = "true" if facts.notifications else "false"
    values: dict[str, Any] = {
        "age": rendered_age,
        "city": facts.city.ru if style.city_lang == "ru" else facts.city.en,
        "language": "ru" if style.city_lang == "ru" else "en",
        "app_version": _APP_VERSIONS[facts.app_index],
        "subscription_status": facts.status,
        "premium": _PREMIUM_RENDERINGS[style.premium][0 if premium else 1],
        "notifications_enabled": notifications,
        "weight": facts.weight,
        "height": facts.height,
    }
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in style.missing:
            continue
        if key in style.nulls:
            out[key] = None
        elif key in style.blanks:
            out[key] = ""  # "An empty string is NULL for every type but str" (CONTRACT §5)
        else:
            out[key] = value
    return out


def _applicable_changes(style: _Style, facts: _Facts, birthday_done: bool) -> list[str]:
    kinds = []
    if facts.app_index < len(_APP_VERSIONS) - 1:
        kinds.append("app_upgrade")
    if _visible(style, "city"):
        kinds.append("city_move")
    if _visible(style, "subscription_status") or _visible(style, "premium"):
        kinds.append("premium_toggle")
    if _visible(style, "weight"):
        kinds.append("weight_change")
    if _visible(style, "age") and not birthday_done:
        kinds.append("birthday")
    return kinds


def _apply_change(kind: str, facts: _Facts, rng: random.Random) -> None:
    if kind == "app_upgrade":
        facts.app_index += 1
    elif kind == "city_move":
        facts.city = rng.choice([city for city in _CITIES if city != facts.city])
    elif kind == "premium_toggle":
        facts.status = _TOGGLED_STATUS[facts.status]
    elif kind == "weight_change":
        delta = round(rng.uniform(0.5, 4.5), 1) * rng.choice((-1, 1))
        facts.weight = round(facts.weight + delta, 1)
    elif kind == "birthday":
        facts.age += 1
    else:  # pragma: no cover - _applicable_changes only offers the kinds above
        raise ValueError(f"unknown change kind {kind!r}")


def _birth_date(anniversary: date, age_after: int) -> date:
    """The birth date of someone who turns ``age_after`` on ``anniversary``."""
    year = anniversary.year - age_after
    if anniversary.month == 2 and anniversary.day == 29:
        return date(year, 2, 28)
    return anniversary.replace(year=year)


def _draw_style(rng: random.Random, anonymous: bool) -> _Style:
    """How the user's values are written: which keys are missing, null or blank, and in what form."""
    missing: set[str] = set()
    nulls: set[str] = set()
    blanks: set[str] = set()
    for key in _OPTIONAL_PERMANENT + _OPTIONAL_CHANGEABLE:
        if anonymous and key in _PROFILE_ONLY_KEYS:
            missing.add(key)
            continue
        roll = rng.random()
        absent_probability = 0.3 if key in ("initial_utm_term", "initial_utm_content") else 0.07
        if roll < absent_probability:
            missing.add(key)
        elif roll < absent_probability + 0.04:
            nulls.add(key)
        elif key == "weight" and roll < absent_probability + 0.07:
            blanks.add(key)
    city_lang = "ru" if rng.random() < 0.8 else "en"
    return _Style(
        ehr_mode=("absent" if rng.random() < 0.5 else "null") if anonymous else "value",
        age=rng.choices(("int", "years", "str"), weights=(6, 2, 2))[0],
        premium=rng.choice(tuple(_PREMIUM_RENDERINGS)),
        city_lang=city_lang,
        notifications_as_string=rng.random() < 0.15,
        missing=frozenset(missing),
        nulls=frozenset(nulls),
        blanks=frozenset(blanks),
    )


def _draw_initial_facts(rng: random.Random, anonymous: bool) -> _Facts:
    """The user's changeable facts at the start of the history window."""
    return _Facts(
        age=rng.randint(18, 75),
        city=rng.choices(_CITIES, weights=_CITY_WEIGHTS)[0],
        app_index=rng.randrange(len(_APP_VERSIONS) - 2),  # room for two upgrades
        status="free" if anonymous else rng.choices(_SUBSCRIPTION_STATUSES, weights=(5, 1, 3, 1))[0],
        notifications=rng.random() < 0.7,
        weight=round(rng.uniform(48.0, 115.0), 1),
        height=rng.randint(150, 198),
    )


class _History(NamedTuple):
    """A user's facts through the history window, and the birth date that agrees with them."""

    #: Epoch milliseconds at which versions[1:] start to apply.
    switches: list[int]
    #: The facts of each version; the first is the initial facts.
    version_facts: list[_Facts]
    #: What each version changed (empty for the first).
    version_changes: list[tuple[str, ...]]
    birth_date: date


def _draw_history(
    rng: random.Random, style: _Style, initial: _Facts, history_start: date, history_days: int
) -> _History:
    """1-3 versions switching at instants inside the history window, each changing something."""
    window_start_ms = _epoch_ms(history_start)
    version_count = rng.choices((1, 2, 3), weights=(45, 35, 20))[0]
    switches = sorted(
        window_start_ms + rng.randrange(history_days * _DAY_MS) for _ in range(version_count - 1)
    )
    facts = dataclasses.replace(initial)
    version_facts = [dataclasses.replace(facts)]
    version_changes: list[tuple[str, ...]] = [()]
    birthday_on: date | None = None
    for switch in switches:
        kinds = _applicable_changes(style, facts, birthday_on is not None)
        chosen = tuple(rng.sample(kinds, k=min(len(kinds), rng.choice((1, 1, 2)))))
        for kind in chosen:
            _apply_change(kind, facts, rng)
        if "birthday" in chosen:
            birthday_on = datetime.fromtimestamp(switch // 1000, tz=UTC).date()
        version_facts.append(dataclasses.replace(facts))
        version_changes.append(chosen)

    # The birth date agrees with the ages: the birthday falls on the switch that raised the age,
    # or, when no version changes the age, on a day outside the history window.
    if birthday_on is None:
        offset = rng.randrange(history_days, 365)
        birthday_on = history_start + timedelta(days=offset)
    return _History(switches, version_facts, version_changes, _birth_date(birthday_on, initial.age + 1))


class _Profile(NamedTuple):
    """The permanent facts: registration, gender, birth date, acquisition channel."""

    created_ms: int
    #: The permanent ``user_properties`` as rendered, before the style drops or nulls any.
    values: dict[str, Any]
    channel: tuple[str, str, str, str, str, str]


def _draw_profile(rng: random.Random, history_start: date, birth_date: date) -> _Profile:
    first_registration_ms = _epoch_ms(date(2019, 1, 1))
    created_ms = first_registration_ms + rng.randrange(_epoch_ms(history_start) - first_registration_ms)
    created = datetime.fromtimestamp(created_ms // 1000, tz=UTC)
    gender = rng.choice(("male", "female"))
    gender_rendering = rng.choices((0, 1, 2), weights=(5, 3, 2))[0]
    rendered_gender = {
        "male": ("м", "male", "M"),
        "female": ("ж", "female", "F"),
    }[gender][gender_rendering]
    birth_date_text = birth_date.isoformat() if rng.random() < 0.65 else f"{birth_date:%d.%m.%Y}"
    channel = rng.choices(_ACQUISITION_CHANNELS, weights=(30, 20, 15, 15, 10, 10))[0]
    values: dict[str, Any] = {
        "gender": rendered_gender,
        "birth_date": birth_date_text,
        "registration_date": created.date().isoformat(),
        "initial_utm_source": channel[0],
        "initial_utm_medium": channel[1],
        "initial_utm_campaign": channel[2],
        "initial_utm_term": channel[3],
        "initial_utm_content": channel[4],
        "initial_referrer": channel[5],
    }
    return _Profile(created_ms, values, channel)


def _identity_properties(style: _Style, ehr_id: str | None) -> dict[str, Any]:
    """``ehr_id`` as the user's app writes it: the value, null, or no key at all."""
    if style.ehr_mode == "value":
        return {"ehr_id": ehr_id}
    if style.ehr_mode == "null":
        return {"ehr_id": None}
    return {}


def _render_permanent(style: _Style, values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: None if key in style.nulls else value
        for key, value in values.items()
        if key not in style.missing
    }


def _draw_ignored_properties(
    rng: random.Random, channel: tuple[str, str, str, str, str, str]
) -> dict[str, Any]:
    """Keys Amplitude's SDKs add on their own; field_mappings.yaml lists them under `ignore`."""
    ignored: dict[str, Any] = {}
    if rng.random() < 0.3:
        candidates: dict[str, Callable[[], Any]] = {
            "initial_gclid": lambda: f"Cj0KCQiA{rng.getrandbits(64):016x}",
            "initial_fbclid": lambda: f"IwAR{rng.getrandbits(64):016x}",
            "initial_referring_domain": lambda: rng.choice(("yandex.ru", "www.google.com", "vk.com")),
            "utm_source": lambda: channel[0],
            "utm_medium": lambda: channel[1],
            "utm_campaign": lambda: channel[2],
            "referrer": lambda: channel[5],
            "referring_domain": lambda: rng.choice(("yandex.ru", "ya.ru", "EMPTY")),
            "gclid": lambda: None,
        }
        for key in sorted(rng.sample(sorted(candidates), k=rng.randint(1, 3))):
            ignored[key] = candidates[key]()
    return ignored


def _property_versions(
    style: _Style, history: _History, constant: dict[str, Any], ignored: dict[str, Any]
) -> tuple[PropertyVersion, ...]:
    """Each version with its full ``user_properties`` snapshot: the properties that never change,
    the version's changeable ones as the user's style renders them, and the SDK's ignored keys."""
    return tuple(
        PropertyVersion(
            valid_from=None
            if number == 0
            else datetime.fromtimestamp(history.switches[number - 1] / 1000, tz=UTC),
            changes=changes,
            city=snapshot.city,
            app_version=_APP_VERSIONS[snapshot.app_index],
            user_properties={**constant, **_render_changeable(style, snapshot), **ignored},
        )
        for number, (snapshot, changes) in enumerate(
            zip(history.version_facts, history.version_changes, strict=True)
        )
    )


def _build_user(seed: int, index: int, history_start: date, history_days: int) -> SimulatedUser:
    """User ``index``, from their own random stream: the sections below draw from it in order,
    so the order of the calls is part of the generated data."""
    rng = scoped_random(seed, "user", index)
    anonymous = rng.random() < 0.15
    device = rng.choices([d for d, _ in _DEVICES], weights=[w for _, w in _DEVICES])[0]
    style = _draw_style(rng, anonymous)
    initial = _draw_initial_facts(rng, anonymous)
    start_version = _APP_VERSIONS[max(0, initial.app_index - rng.randrange(3))]
    history = _draw_history(rng, style, initial, history_start, history_days)
    profile = _draw_profile(rng, history_start, history.birth_date)
    ehr_id = None if anonymous else f"EHR-{(index * 7919 + 1013) % 1_000_000:06d}"
    constant = {**_identity_properties(style, ehr_id), **_render_permanent(style, profile.values)}
    ignored = _draw_ignored_properties(rng, profile.channel)

    versions = _property_versions(style, history, constant, ignored)

    amplitude_id = 100_000_000_000 + index * 1_000_003 + rng.randrange(1_000_000)
    device_id = _uuid4(rng)
    if device.platform == "iOS":
        device_id = device_id.upper()
    elif device.platform == "Android":
        device_id = device_id + "R"
    return SimulatedUser(
        index=index,
        amplitude_id=amplitude_id,
        user_id=None if anonymous else f"patient-{(index * 104_729 + 77) % 10_000_000:07d}",
        ehr_id=ehr_id,
        device_id=device_id,
        device=device,
        ip_address=f"{rng.choice((5, 31, 46, 77, 95, 178, 185, 188))}.{rng.randrange(256)}."
        f"{rng.randrange(256)}.{rng.randrange(1, 255)}",
        language="Russian" if style.city_lang == "ru" else "English",
        user_creation_time=_format_ms(profile.created_ms),
        start_version=start_version,
        activity=min(rng.paretovariate(1.5), 20.0),
        session_phase_ms=rng.randrange(1_800_000),
        versions=versions,
        switch_ms=tuple(history.switches),
    )


class _Population(NamedTuple):
    users: tuple[SimulatedUser, ...]
    cum_weights: tuple[float, ...]


@functools.lru_cache(maxsize=16)
def _population(seed: int, users: int, history_start: date, history_days: int) -> _Population:
    built = tuple(_build_user(seed, index, history_start, history_days) for index in range(users))
    cum_weights: list[float] = []
    total = 0.0
    for user in built:
        total += user.activity
        cum_weights.append(total)
    return _Population(built, tuple(cum_weights))


def population(config: SimulatorConfig) -> tuple[SimulatedUser, ...]:
    """The simulated users, in index order (cached per seed/size/history window)."""
    return _population(config.seed, config.users, config.history_start, config.history_days).users


# --------------------------------------------------------------------------------------------
# Layout: how many events each (hour, part) of a day holds


@functools.lru_cache(maxsize=512)
def day_layout(config: SimulatorConfig, day: date) -> tuple[PartLayout, ...]:
    """The day's archive files in canonical (hour, part) order; empty for an empty day.

    Exactly ``events_per_day`` events, spread over the hours by a jittered daily curve (largest
    remainder rounding); hours without events have no file, as in a real export.
    """
    if day in config.empty_days or config.events_per_day == 0:
        return ()
    rng = scoped_random(config.seed, "layout", day.isoformat())
    weights = [weight * rng.uniform(0.85, 1.15) for weight in _HOUR_WEIGHTS]
    total_weight = sum(weights)
    shares = [config.events_per_day * weight / total_weight for weight in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(24), key=lambda hour: (counts[hour] - shares[hour], hour))
    for hour in by_remainder[: config.events_per_day - sum(counts)]:
        counts[hour] += 1

    layout: list[PartLayout] = []
    for hour, count in enumerate(counts):
        if count == 0:
            continue
        parts = 1
        if count >= 2 and config.max_parts_per_hour > 1 and rng.random() < config.multi_part_hour_fraction:
            parts = rng.randint(2, min(config.max_parts_per_hour, count))
        cuts = [0, *sorted(rng.sample(range(1, count), parts - 1)), count]
        for part in range(parts):
            received_from = _HOUR_MS * cuts[part] // count
            received_to = max(received_from + 1, _HOUR_MS * cuts[part + 1] // count)
            layout.append(PartLayout(hour, part, cuts[part + 1] - cuts[part], received_from, received_to))
    return tuple(layout)


# --------------------------------------------------------------------------------------------
# Events


def _choice_table(entries: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    names = tuple(name for name, _ in entries)
    cumulative: list[float] = []
    total = 0.0
    for _, weight in entries:
        total += weight
        cumulative.append(total)
    return names, tuple(cumulative)


_EVENT_TYPES, _EVENT_TYPE_CUM_WEIGHTS = _choice_table(
    (
        ("app_open", 14),
        ("session_start", 8),
        ("screen_view", 30),
        ("doctor_search", 9),
        ("doctor_profile_viewed", 8),
        ("appointment_booked", 4),
        ("appointment_cancelled", 1),
        ("lab_result_viewed", 6),
        ("medical_record_viewed", 5),
        ("chat_message_sent", 7),
        ("payment_completed", 2),
        ("push_opened", 4),
        ("$identify", 2),
    )
)

_SCREENS = ("home", "doctors", "appointments", "lab_results", "chat", "profile", "medical_record")
_SPECIALTIES = ("therapist", "pediatrician", "cardiologist", "dermatologist", "neurologist", "gynecologist")
_LAB_TESTS = ("CBC", "glucose", "lipid_panel", "TSH", "vitamin_d", "ferritin", "HbA1c")
_PUSH_CAMPAIGNS = ("appointment_reminder", "lab_ready", "checkup_promo", "chat_reply")


def _event_properties(event_type: str, rng: random.Random) -> dict[str, Any]:
    """A small, plausible ``event_properties`` dict for ``event_type``."""
    if event_type == "app_open":
        return {"source": rng.choice(("icon", "push", "deeplink"))}
    if event_type == "screen_view":
        return {"screen": rng.choice(_SCREENS)}
    if event_type == "doctor_search":
        return {"specialty": rng.choice(_SPECIALTIES), "results": rng.randint(0, 40)}
    if event_type == "doctor_profile_viewed":
        return {"doctor_id": rng.randint(1000, 9999), "specialty": rng.choice(_SPECIALTIES)}
    if event_type == "appointment_booked":
        return {
            "specialty": rng.choice(_SPECIALTIES),
            "clinic_id": rng.randint(1, 60),
            "telemed": rng.random() < 0.4,
            "days_ahead": rng.randint(0, 14),
        }
    if event_type == "appointment_cancelled":
        return {
            "reason": rng.choice(("reschedule", "feel_better", "other")),
            "hours_before": rng.randint(1, 72),
        }
    if event_type == "lab_result_viewed":
        return {"test": rng.choice(_LAB_TESTS), "abnormal": rng.random() < 0.15}
    if event_type == "medical_record_viewed":
        return {"section": rng.choice(("visits", "prescriptions", "vaccinations", "allergies"))}
    if event_type == "chat_message_sent":
        return {"length": rng.randint(2, 400), "with_attachment": rng.random() < 0.1}
    if event_type == "payment_completed":
        return {"amount": float(rng.choice((990, 1490, 2500, 3200, 4900))), "currency": "RUB"}
    if event_type == "push_opened":
        return {"campaign": rng.choice(_PUSH_CAMPAIGNS)}
    return {}  # session_start, $identify


def _client_delay_ms(rng: random.Random) -> int:
    """Time between the event on the device and its upload (mostly seconds; sometimes queued)."""
    roll = rng.random()
    if roll < 0.7:
        return rng.randrange(50, 3_000)
    if roll < 0.95:
        return rng.randrange(3_000, 60_000)
    return rng.randrange(60_000, 900_000)


# Constant sub-objects shared by the event dicts (only ever serialized, never mutated): fewer
# allocations per event keeps generation fast.
_EMPTY: dict[str, Any] = {}
_EVENT_DATA: dict[tuple[bool, bool], dict[str, Any]] = {
    (mobile, identify): {
        "path": "/batch" if mobile else "/2/httpapi",
        "group_ids": _EMPTY,
        "group_first_event": _EMPTY,
        **({"user_properties_updated": True} if identify else {}),
    }
    for mobile in (True, False)
    for identify in (True, False)
}


class EventTimes(NamedTuple):
    """An event's timestamps in Amplitude's text form (``YYYY-MM-DD HH:MM:SS.ffffff``)."""

    event_time: str
    client_event_time: str
    client_upload_time: str
    server_received_time: str
    server_upload_time: str
    processed_time: str


def random_event_types(rng: random.Random, count: int) -> list[str]:
    """``count`` event types drawn with the simulated app's frequencies."""
    return rng.choices(_EVENT_TYPES, cum_weights=_EVENT_TYPE_CUM_WEIGHTS, k=count)


def build_event(
    user: SimulatedUser,
    event_type: str,
    event_ms: int,
    times: EventTimes,
    project_id: int,
    rng: random.Random,
) -> dict[str, Any]:
    """One event as the Export API serves it: Amplitude's fields, with the user's snapshot current at
    ``event_ms`` (the epoch milliseconds of ``times.event_time``).

    Draws the ``$insert_id``, the ``event_id``, the ``event_properties`` and the ``uuid`` from
    ``rng``, in that order. The dict shares its constant sub-objects with other events: serialize
    it, never mutate it.
    """
    version = user._version_at_ms(event_ms)
    device = user.device
    mobile = device.platform != "Web"
    return {
        "$insert_id": _uuid4(rng),
        "$schema": 12,
        "adid": None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": user.amplitude_id,
        "app": project_id,
        "city": version.city.en,
        "client_event_time": times.client_event_time,
        "client_upload_time": times.client_upload_time,
        "country": version.city.country,
        "data": _EVENT_DATA[mobile, event_type == "$identify"],
        "device_brand": device.device_brand,
        "device_carrier": device.device_carrier,
        "device_family": device.device_family,
        "device_id": user.device_id,
        "device_manufacturer": device.device_manufacturer,
        "device_model": device.device_model,
        "device_type": device.device_type,
        "dma": None,
        "event_id": rng.randrange(1, 50_000),
        "event_properties": _event_properties(event_type, rng),
        "event_time": times.event_time,
        "event_type": event_type,
        "group_properties": _EMPTY,
        "groups": _EMPTY,
        "idfa": None,
        "ip_address": user.ip_address,
        "is_attribution_event": False,
        "language": user.language,
        "library": device.library,
        "location_lat": version.city.lat if mobile else None,
        "location_lng": version.city.lng if mobile else None,
        "os_name": device.os_name,
        "os_version": device.os_version,
        "paying": None,
        "platform": device.platform,
        "processed_time": times.processed_time,
        "region": version.city.region,
        "sample_rate": None,
        "server_received_time": times.server_received_time,
        "server_upload_time": times.server_upload_time,
        # Events of one user in the same 30-minute bucket share a session.
        "session_id": event_ms - (event_ms - user.session_phase_ms) % 1_800_000,
        "start_version": user.start_version if mobile else None,
        "user_creation_time": user.user_creation_time,
        "user_id": user.user_id,
        "user_properties": version.user_properties,
        "uuid": _uuid4(rng),
        "version_name": version.app_version if mobile else None,
    }


def _iter_part_lines(config: SimulatorConfig, day: date, layout: PartLayout) -> Iterator[bytes]:
    """The serialized events of one part, ordered by ``server_received_time``, one at a time."""
    hour, count = layout.hour, layout.events
    rng = scoped_random(config.seed, "events", day.isoformat(), hour, layout.part)
    people = _population(config.seed, config.users, config.history_start, config.history_days)
    users = rng.choices(people.users, cum_weights=people.cum_weights, k=count)
    event_types = random_event_types(rng, count)
    received_offsets = sorted(
        rng.randrange(layout.received_from_ms, layout.received_to_ms) for _ in range(count)
    )

    hour_start = _epoch_ms(day) + hour * _HOUR_MS
    last_offset = _HOUR_MS - 1
    prefix = f"{day.isoformat()} {hour:02d}:"

    def stamp(offset: int) -> str:
        minutes, rest = divmod(offset, 60_000)
        seconds, millis = divmod(rest, 1_000)
        return f"{prefix}{minutes:02d}:{seconds:02d}.{millis:03d}000"

    for user, event_type, received in zip(users, event_types, received_offsets, strict=True):
        uploaded = max(0, received - rng.randrange(40))
        happened = max(0, uploaded - _client_delay_ms(rng))
        client_happened = happened
        if rng.random() < 0.1:  # a device clock a little off
            client_happened = min(last_offset, max(0, happened + rng.randint(-5_000, 5_000)))
        processed = min(last_offset, received + rng.randrange(10, 800))
        times = EventTimes(
            event_time=stamp(happened),
            client_event_time=stamp(client_happened),
            client_upload_time=stamp(uploaded),
            server_received_time=stamp(received),
            server_upload_time=stamp(uploaded),
            processed_time=stamp(processed),
        )
        yield orjson.dumps(
            build_event(user, event_type, hour_start + happened, times, config.project_id, rng)
        )


def iter_part_lines(config: SimulatorConfig, day: date, hour: int, part: int) -> Iterator[bytes]:
    """The lines of one archive file, generated lazily (constant memory at any volume)."""
    for layout in day_layout(config, day):
        if (layout.hour, layout.part) == (hour, part):
            return _iter_part_lines(config, day, layout)
    raise LookupError(f"{day.isoformat()} has no file for hour {hour} part {part}")


def hour_files(config: SimulatorConfig, day: date, hour: int) -> list[HourFile]:
    """The archive files of one hour, in part order (empty when the hour has no events)."""
    return [
        HourFile(day, hour, layout.part, list(_iter_part_lines(config, day, layout)))
        for layout in day_layout(config, day)
        if layout.hour == hour
    ]


def iter_day_files(config: SimulatorConfig, day: date) -> Iterator[HourFile]:
    """The day's archive files in canonical (hour, part) order, one hour in memory at a time."""
    hours = sorted({layout.hour for layout in day_layout(config, day)})
    for hour in hours:
        yield from hour_files(config, day, hour)


def day_files(config: SimulatorConfig, day: date) -> list[HourFile]:
    """All archive files of ``day`` in canonical (hour, part) order."""
    return list(iter_day_files(config, day))


def expected_lines(config: SimulatorConfig, day: date) -> list[bytes]:
    """The day's events in the order a correct client writes them: by hour, then part."""
    return [line for hour_file in iter_day_files(config, day) for line in hour_file.lines]


def expected_week_lines(config: SimulatorConfig, monday: date) -> list[bytes]:
    """The lines of the weekly export object for the week starting ``monday`` (CONTRACT §4)."""
    return [line for offset in range(7) for line in expected_lines(config, monday + timedelta(days=offset))]
