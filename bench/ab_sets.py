"""What an A/B run measures: the data API, rules, webhooks and workflows scenarios as variants
that two rocketd versions serve from one app, set up once.

Each `ABSet` is declared from its scenario module's own app, schema, seed, answer checks, wrk
script and reset (nothing is copied here): `prepare` checks that the app's database does not
exist yet and builds the app through server A, `login` and `check` run on each server, and every
`Variant` is one wrk run (its data reset before it, its writes checked after it). A set whose
variants POST to an entity without and with a feature (`PlainOrMarked`) gets its checks and
variants from the two entity names. The sets and their variants:

- data-api (`bench/scenarios/data_api.py`): list, get, create, update, nested on `benchdata`
  (10,000 seeded orders, 32 connections, wrk/data_api.lua);
- rules (`rules.py`, scenario rule_cost): create and update on `plain` and on `ruled` (5 rules
  and a state machine), 10,000 seeded rows each, 32 connections;
- webhooks (`webhooks.py`, scenario write_cost): POST to `plain` and to `hooked` (one async
  webhook) on API-only servers (`background_work: false`), 16 connections: the write path with
  its outbox row; no delivery runs, so neither server's dispatcher works during the other's run;
- workflows (`workflows.py`, scenario trigger_cost): POST to `plain_order` and to `held_order`
  (its workflow waits at an approval first) on API-only servers, 16 connections: the write with
  the instance row it starts; no step runs.

Adding a set: one `ABSet(...)` with its scenario module's functions, and its name in `SETS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from bench.harness import Bench
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, ScenarioResult
from bench.scenarios import data_api, rules, webhooks, workflows

# (bench, server, token, seconds, measurement name) -> the measured wrk run
RunWrk = Callable[[Bench, ServerProcess, str, int, str], Measurement]
# (bench, the measured run, where failures go): checks what the run wrote
Verify = Callable[[Bench, Measurement, ScenarioResult], None]
# (bench, server, token, the chosen variants, where failures go): checks the server's answers
# against the database
Check = Callable[[Bench, ServerProcess, str, list[str], ScenarioResult], None]
# (bench, port of server A, what `resources` gave): creates the app, its metadata and seed rows
# (what it returns is not used)
Setup = Callable[[Bench, int, Any], object]


@dataclass(frozen=True)
class Variant:
    name: str
    run: RunWrk
    resets: bool = True  # the set's data is reset before each run
    verify: Verify | None = None


@dataclass(frozen=True)
class ABSet:
    """One app both versions serve; `prepare` is called once, on side A's server, before B
    starts."""

    name: str
    title: str
    app_db: str
    settings: Mapping[str, str | int]
    scenarios: Mapping[str, tuple[str, ...]]  # scenario name -> its variants
    setup: Setup
    login: Callable[[int], str]  # an access token of the app's admin from the server on a port
    answers: Check
    variant: Callable[[str], Variant]  # variant name -> the variant
    reset: Callable[[Bench], None]  # back to the state right after `setup`
    # What lives as long as the set's run (the webhook receiver); `setup` gets what it yields.
    resources: Callable[[], AbstractContextManager[Any]] = nullcontext

    def prepare(self, bench: Bench, server: ServerProcess, resource: Any) -> None:
        """The app, its metadata and seed rows, created through `server`."""
        bench.require_no_database(self.app_db)
        self.setup(bench, server.port, resource)

    def check(
        self,
        bench: Bench,
        server: ServerProcess,
        token: str,
        variants: list[str],
        result: ScenarioResult,
    ) -> None:
        """Answers of `server` for the chosen variants, checked against the database; the data
        is reset afterwards."""
        self.answers(bench, server, token, variants, result)
        self.reset(bench)


def _at_least(what: str, count: Callable[[Bench], int]) -> Verify:
    """A check that the run stored `count` >= its answered requests."""

    def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
        stored = count(bench)
        if stored < m.requests:
            result.failures.append(f"{m.name}: {m.requests} answered, {stored} {what} stored")

    return verify


def _empty(what: str, count: Callable[[Bench], int]) -> Verify:
    def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
        if stored := count(bench):
            result.failures.append(f"{m.name}: {stored} {what} (expected none)")

    return verify


# --- data-api ---------------------------------------------------------------------------------

ORDER_IDS = "order-ids.txt"  # in the bench's workdir: the seeded orders' ids, for wrk


def _data_api_setup(bench: Bench, port: int, resource: None) -> None:
    token = data_api.create_app(port)
    data_api.create_schema(port, token)
    data_api.seed(bench)
    data_api.write_ids(bench, bench.workdir / ORDER_IDS)


def _data_api_answers(
    bench: Bench, server: ServerProcess, token: str, variants: list[str], result: ScenarioResult
) -> None:
    for op in variants:
        data_api.CHECKS[op](bench, server.port, token, result)


def _data_api_variant(op: str) -> Variant:
    operation = data_api.OPERATIONS[op]

    def run(
        bench: Bench, server: ServerProcess, token: str, seconds: int, name: str
    ) -> Measurement:
        env = data_api.wrk_env(operation, token, bench.workdir / ORDER_IDS)
        return data_api.run_wrk(server, env, seconds, name)

    def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
        data_api.check_rocketd_writes(bench, op, m.requests, result)

    return Variant(op, run, verify=verify)


DATA_API = ABSet(
    name="data-api",
    title="the data API on 10,000 seeded orders",
    app_db=data_api.APP_DB,
    settings={"auth_access_token_ttl": data_api.ACCESS_TOKEN_TTL_S},
    scenarios={op: (op,) for op in ("list", "get", "create", "update", "nested")},
    setup=_data_api_setup,
    login=data_api.app_login,
    answers=_data_api_answers,
    variant=_data_api_variant,
    reset=data_api.reset,
)


# --- rules ------------------------------------------------------------------------------------


def _rules_setup(bench: Bench, port: int, resource: None) -> None:
    rules.setup(bench, port)
    rules.write_id_files(bench, bench.workdir)


def _rules_answers(
    bench: Bench, server: ServerProcess, token: str, variants: list[str], result: ScenarioResult
) -> None:
    rules.check(server.port, token, bench, result)


def _rules_variant(variant: str) -> Variant:
    op, side = variant.split(" ")

    def run(
        bench: Bench, server: ServerProcess, token: str, seconds: int, name: str
    ) -> Measurement:
        env = rules.wrk_env(op, side, token, rules.id_file(bench.workdir, side))
        return rules.run_wrk(server, op, env, seconds, name)

    def created(bench: Bench) -> int:
        return rules.created_rows(bench, side)

    verify = _at_least("rows", created) if op == "create" else None
    return Variant(variant, run, verify=verify)


RULES = ABSet(
    name="rules",
    title="create and update without rules and with 5 rules + a state machine",
    app_db=rules.APP_DB,
    settings={"auth_access_token_ttl": rules.ACCESS_TOKEN_TTL_S},
    scenarios={
        "rule_cost": tuple(f"{op} {side}" for op in ("create", "update") for side in rules.SIDES)
    },
    setup=_rules_setup,
    login=rules.admin_token,
    answers=_rules_answers,
    variant=_rules_variant,
    reset=rules.reset,
)


# --- POSTs without and with a feature ---------------------------------------------------------


@dataclass(frozen=True)
class PlainOrMarked:
    """POSTs of one body to two identical entities, `plain` and `marked` (which has a webhook or
    a workflow): every marked write leaves one row that `marks` counts, a plain write none. The
    variants are `POST <plain>` and `POST <marked>`."""

    app_name: str
    plain: str
    marked: str
    body: Mapping[str, object]
    what: str  # what `marks` counts, e.g. "outbox rows"
    marks: Callable[[Bench], int]
    # (server, token, entity, seconds, measurement name): the scenario's own wrk run of POSTs
    post: Callable[[ServerProcess, str, str, int, str], Measurement]

    @property
    def variants(self) -> tuple[str, str]:
        return (f"POST {self.plain}", f"POST {self.marked}")

    def answers(
        self,
        bench: Bench,
        server: ServerProcess,
        token: str,
        variants: list[str],
        result: ScenarioResult,
    ) -> None:
        """One POST to each entity: 201 each, one mark for the marked one only."""
        expected = 0
        for entity in (self.plain, self.marked):
            path = f"/api/{self.app_name}/{entity}"
            status, _ = http_json(server.port, "POST", path, self.body, token=token)
            expected += entity == self.marked
            found = self.marks(bench)
            if status != 201 or found != expected:
                result.failures.append(
                    f"{server.name}: POST {entity} answered {status}, {found} {self.what} "
                    f"(expected 201, {expected})"
                )

    def variant(self, variant: str) -> Variant:
        entity = variant.removeprefix("POST ")

        def run(
            bench: Bench, server: ServerProcess, token: str, seconds: int, name: str
        ) -> Measurement:
            return self.post(server, token, entity, seconds, name)

        marked = entity == self.marked
        verify = (_at_least if marked else _empty)(self.what, self.marks)
        return Variant(variant, run, verify=verify)


HOOKED = PlainOrMarked(
    app_name=webhooks.APP_NAME,
    plain="plain",
    marked="hooked",
    body=json.loads(webhooks.BODY),
    what="outbox rows",
    marks=webhooks.outbox_rows,
    post=webhooks.post,
)


def _webhooks_setup(bench: Bench, port: int, receiver: webhooks.Receiver) -> None:
    webhooks.setup(port, f"http://127.0.0.1:{receiver.port}/hook")


WEBHOOKS = ABSet(
    name="webhooks",
    title="POST without and with one async webhook, API-only servers (the write path)",
    app_db=webhooks.APP_DB,
    settings=webhooks.server_settings(background_work=False),
    scenarios={"write_cost": HOOKED.variants},
    setup=_webhooks_setup,
    login=webhooks.app_token,
    answers=HOOKED.answers,
    variant=HOOKED.variant,
    reset=webhooks.reset,
    resources=webhooks.Receiver,
)


def _held_instances(bench: Bench) -> int:
    return workflows.instances(bench, workflows.HOLD["name"])


HELD = PlainOrMarked(
    app_name=workflows.APP_NAME,
    plain=workflows.SIDES["plain"],
    marked=workflows.SIDES["held"],
    body=json.loads(workflows.BODY),
    what="hold instances",
    marks=_held_instances,
    post=workflows.post,
)

WORKFLOWS = ABSet(
    name="workflows",
    title=(
        "POST without a workflow and with one that waits at an approval, API-only servers "
        "(the trigger)"
    ),
    app_db=workflows.APP_DB,
    settings={"background_work": "false", "auth_access_token_ttl": workflows.ACCESS_TOKEN_TTL_S},
    scenarios={"trigger_cost": HELD.variants},
    setup=lambda bench, port, resource: workflows.setup(bench, port),
    login=workflows.admin_token,
    answers=HELD.answers,
    variant=HELD.variant,
    reset=workflows.reset,
)


SETS: dict[str, ABSet] = {s.name: s for s in (DATA_API, RULES, WEBHOOKS, WORKFLOWS)}


def select(names: list[str]) -> dict[str, list[str]]:
    """Map set and scenario names to {set: [variant, ...]} in the sets' own order; no names
    means every set (the comparison issue 14 asks for)."""
    wanted = set(names) if names else set(SETS)
    chosen: dict[str, list[str]] = {}
    known: set[str] = set()
    for set_name, abset in SETS.items():
        known |= {set_name, *abset.scenarios}
        picked = [
            variant
            for scenario, variants in abset.scenarios.items()
            if set_name in wanted or scenario in wanted
            for variant in variants
        ]
        if picked:
            chosen[set_name] = picked
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"unknown A/B set or scenario: {', '.join(sorted(unknown))}")
    return chosen


def label(set_name: str, variants: list[str], tag: str | None = None) -> str:
    """`ab-[<tag>-]<set>` for a whole set, else `ab-[<tag>-]<set>-<scenario>-...` (the result
    files' stem)."""
    abset = SETS[set_name]
    prefix = ["ab", tag] if tag else ["ab"]
    if len(variants) == sum(len(v) for v in abset.scenarios.values()):
        return "-".join([*prefix, set_name])
    scenarios = [s for s, vs in abset.scenarios.items() if any(v in variants for v in vs)]
    return "-".join([*prefix, set_name, *scenarios])
