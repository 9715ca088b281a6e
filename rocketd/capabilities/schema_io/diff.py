"""Schema diff (`POST /_admin/diff`): what importing a document would do to an app, item by
item, with nothing written.

The importer decides, not this module: `document.plan_import` parses, validates and matches every
item by its natural key exactly as an import does, in a read-only transaction. So each item says
what import would do with it (`create`; `update`: a UI config's upsert; `skip`; `ignore`), and
an item import skips because the app has one with its key is compared with that one, its
differences listed although import leaves them. A document import would reject is refused with
the same problems (422). Items are compared in their export form (`MetadataKind.export_item`),
so spellings that store the same (defaults left out, upstream formats) are not changes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.schema_io.document import (
    NOT_A_TARGET,
    Decision,
    ImportPlan,
    Kinds,
    SampleTarget,
    check_document,
    exported_items,
    exported_kinds,
    plan_import,
    sample_targets,
)
from rocketd.engine.admin import AdminCall, MetadataKind
from rocketd.engine.app_settings import Sections, section_named, stored_settings
from rocketd.errors import ApiError, ErrorDetail, ValidationFailed

GROUPS: Final = ("added", "changed", "unchanged", "only_in_app", "left_out")
ACTIONS: Final = ("create", "update", "skip", "ignore")
SETTINGS: Final = "settings"


class DiffRejected(ValidationFailed):
    """Import would reject the document: 422 with the problems the import would list."""

    def __init__(self, problems: Sequence[ErrorDetail]) -> None:
        super().__init__(
            f"Import would reject the document: {len(problems)} problem(s)", list(problems)
        )


@dataclass(frozen=True)
class Entry:
    """One item on either side: its pairing key (None: pairs with nothing), how the answer
    names it, and its value in export form. `decision` is the import's, for document items."""

    key: Hashable | None
    label: str
    value: Any
    decision: Decision | None = None


# ------------------------------------------------------------------------------ comparison


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1` (Python says it is), `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _naming(items: Sequence[Any]) -> Callable[[Any], str] | None:
    """How the objects of an array are told apart, when they can be: by `name` (an entity's
    fields), `id` (a workflow's steps), or by their `fields` (an entity's indexes). None:
    compared as a whole."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in ("name", "id"):
        if all(isinstance(i.get(key), str) for i in items):
            return operator.itemgetter(key)
    if all(isinstance(i.get("fields"), list) for i in items):
        return _index_name
    return None


def _index_name(index: Mapping[str, Any]) -> str:
    return ",".join(str(f) for f in index["fields"])


def _keyed(items: Sequence[Any], name: Callable[[Any], str]) -> dict[str, Any] | None:
    out = {name(i): i for i in items}
    return out if len(out) == len(items) else None  # two items named alike: compare whole


def json_changes(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Where two JSON values differ, as `{"path", "old", "new"}` (null: absent): objects key by
    key (`primary_key.type`), arrays of named objects item by item (`fields[price].type`,
    `indexes[category,-price].unique`), anything else as a whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[dict[str, Any]] = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += json_changes(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(old, list) and isinstance(new, list):
        name = _naming([*old, *new])
        before = None if name is None else _keyed(old, name)
        after = None if name is None else _keyed(new, name)
        if before is not None and after is not None:
            out = []
            for key in [*before, *(k for k in after if k not in before)]:
                out += json_changes(before.get(key), after.get(key), f"{path}[{key}]")
            return out
    if same_json(old, new):
        return []
    return [{"path": path, "old": old, "new": new}]


def compare(proposed: Sequence[Entry], stored: Sequence[Entry]) -> dict[str, list[Any]]:
    """One section of the diff: the document's items (`proposed`, each with the import's
    decision) against the app's (`stored`), in `GROUPS`."""
    by_key: dict[Hashable, list[Entry]] = {}
    for entry in stored:
        if entry.key is not None:
            by_key.setdefault(entry.key, []).append(entry)
    groups: dict[str, list[Any]] = {group: [] for group in GROUPS}
    named: set[Hashable] = set()
    for entry in proposed:
        decision = entry.decision
        assert decision is not None  # every proposed entry comes from a decision
        shown = {"key": entry.label, "at": decision.where}
        if entry.key is not None:
            named.add(entry.key)
        pairs = by_key.get(entry.key, []) if entry.key is not None else []
        if decision.action == "ignore" or (decision.action == "skip" and not pairs):
            groups["left_out"].append({**shown, "import": decision.action, "reason": decision.why})
        elif not pairs:
            groups["added"].append({**shown, "import": "create", "item": entry.value})
        else:
            action = "update" if decision.action == "create" else "skip"
            found = [json_changes(pair.value, entry.value) for pair in pairs]
            changes = next((c for c in found if not c), found[0])  # an equal one, or the first
            if changes:
                groups["changed"].append({**shown, "import": action, "changes": changes})
            else:
                groups["unchanged"].append({**shown, "import": action})
    for entry in stored:
        if entry.key is None or entry.key not in named:
            groups["only_in_app"].append({"key": entry.label, "item": entry.value})
    return groups


def summary(sections: Mapping[str, Mapping[str, list[Any]]], records: int) -> dict[str, Any]:
    """The counts at the top of the answer: per group, per import action, per section;
    `records`: the sample rows import would write (its `summary.records`)."""
    entries = [e for s in sections.values() for group in GROUPS for e in s[group]]
    return {
        **{group: sum(len(s[group]) for s in sections.values()) for group in GROUPS},
        "import": {a: sum(1 for e in entries if e.get("import") == a) for a in ACTIONS},
        "records": records,
        "sections": {
            name: {group: len(s[group]) for group in GROUPS} for name, s in sections.items()
        },
    }


# ------------------------------------------------------------------------------ the two sides


def _parsed(kind: MetadataKind[Any], raw: object, call: AdminCall) -> Any:
    """The item `raw` describes, or None when it does not parse (it is then shown as given)."""
    try:
        return kind.parse(raw, call)
    except ApiError:
        return None


def _label(kind: MetadataKind[Any], raw: object, item: Any, key: Hashable | None) -> str:
    label = kind.skip_label(raw, item)
    if label != "?" or not isinstance(key, tuple):
        return label
    return "/".join(p.decode() if isinstance(p, bytes) else str(p) for p in key)


def _pairing_key(kind: MetadataKind[Any], raw: object, item: Any) -> Hashable | None:
    key = kind.raw_key(raw)
    if key is None and item is not None:
        key = kind.diff_key(item)
    return key


def proposed_entry(kind: MetadataKind[Any], decision: Decision, call: AdminCall) -> Entry:
    item = decision.item
    if item is None and decision.action == "skip":  # skipped on its key: parse it to compare
        item = _parsed(kind, decision.raw, call)
    key = decision.key
    if key is None and item is not None:
        key = kind.diff_key(item)
    value = decision.raw if item is None else kind.export_item(item)
    return Entry(key, _label(kind, decision.raw, item, key), value, decision)


async def stored_entries(
    conn: AsyncConnection[Any], kind: MetadataKind[Any], call: AdminCall
) -> list[Entry]:
    """The app's items of `kind` as an export has them (a row that no longer parses as is)."""
    out = []
    for raw in await exported_items(conn, kind):
        item = _parsed(kind, raw, call)
        key = _pairing_key(kind, raw, item)
        value = raw if item is None else kind.export_item(item)
        out.append(Entry(key, _label(kind, raw, item, key), value))
    return out


def _settings_value(sections: Sections, decision: Decision) -> Any:
    """A settings section of the document as import would store it (as given when invalid)."""
    if decision.item is not None:
        return decision.item
    name = decision.key[0] if isinstance(decision.key, tuple) else None
    section = None if name is None else section_named(sections, str(name))
    raw = decision.raw
    if section is None or not isinstance(raw, Mapping) or section.problems(raw):
        return raw
    return section.overrides(None, raw)


async def _settings(
    conn: AsyncConnection[Any], plan: ImportPlan, sections: Sections
) -> dict[str, list[Any]]:
    stored = await stored_settings(conn)
    app_side = [Entry((s.name,), s.name, stored[s.name]) for s in sections if stored.get(s.name)]
    document_side = [
        Entry(d.key, d.where.removeprefix("settings."), _settings_value(sections, d), d)
        for d in plan.decisions.get(SETTINGS, [])
    ]
    return compare(document_side, app_side)


def sample_json(targets: Sequence[SampleTarget], plan: ImportPlan) -> list[dict[str, Any]]:
    """Where import would write each `sample_data` entry, and how many rows (the rows' values
    are checked only by an import: they go through the write pipeline)."""
    out: list[dict[str, Any]] = []
    for target in targets:
        if target.entity is None and target.relation is None:
            out.append({"key": target.key, "import": "ignore", "reason": NOT_A_TARGET})
            continue
        rows = target.checked_rows(plan)
        entry: dict[str, Any] = {
            "key": target.key,
            "import": "insert",
            "into": "entity" if target.entity is not None else "join_table",
            "rows": sum(1 for _, row in rows if target.kept(row)),
        }
        dropped = target.dropped(rows)
        if dropped:
            entry["unknown_keys"] = dropped
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------ the diff


async def diff_document(
    pool: AsyncConnectionPool[Any],
    call: AdminCall,
    doc: object,
    kinds: Kinds,
    sections: Sections,
) -> dict[str, Any]:
    """What importing `doc` would do to the app: `summary`, then one section per kind of the
    document, `settings` and `sample_data`. `DiffRejected` (422) for a document import would
    reject; the checks before any work raise what import raises (400, 422)."""
    document = check_document(doc)
    kinds = exported_kinds(kinds)
    async with pool.connection() as conn, conn.transaction():
        # One snapshot for every read, and the database's word that nothing here writes.
        await conn.execute("set transaction isolation level repeatable read, read only")
        plan, registry = await plan_import(conn, document, call, kinds, sections)
        if plan.problems:
            raise DiffRejected(plan.problems)
        samples = sample_json(sample_targets(document, registry, plan), plan)
        if plan.problems:
            raise DiffRejected(plan.problems)
        compared: dict[str, dict[str, list[Any]]] = {}
        for kind in kinds:
            proposed = [proposed_entry(kind, d, call) for d in plan.decisions.get(kind.name, [])]
            compared[kind.name] = compare(proposed, await stored_entries(conn, kind, call))
        compared[SETTINGS] = await _settings(conn, plan, sections)
    records = sum(s.get("rows", 0) for s in samples)
    return {"summary": summary(compared, records), **compared, "sample_data": samples}
