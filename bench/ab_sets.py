"""What an A/B run measures: the data API, rules, webhooks and workflows scenarios as variants
that two rocketd versions serve from one app, set up once.

Each `ABSet` borrows its scenario module's app, schema, seed, answer checks, wrk script and
reset (nothing is copied here): `prepare` builds the app through server A and seeds it, `login`
and `check` run on each server, and every `Variant` is one wrk run (its data reset before it, its
writes checked after it). The sets and their variants:

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
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

from bench.harness import Bench
from bench.loadgen import run_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, ScenarioResult
from bench.scenarios import data_api, rules, webhooks, workflows

# (server, token, seconds, measurement name) -> the measured wrk run
RunWrk = Callable[[ServerProcess, str, int, str], Measurement]
# (bench, the measured run, where failures go): checks what the run wrote
Verify = Callable[[Bench, Measurement, ScenarioResult], None]


@dataclass(frozen=True)
class Variant:
    name: str
    run: RunWrk
    resets: bool = True  # the set's data is reset before each run
    verify: Verify | None = None


class ABSet(ABC):
    """One app both versions serve; `prepare` is called once, on side A's server, before B
    starts."""

    name: str
    title: str
    app_db: str
    settings: dict[str, str | int]
    scenarios: dict[str, tuple[str, ...]]  # scenario name -> its variants

    @abstractmethod
    def prepare(self, bench: Bench, server: ServerProcess, result: ScenarioResult) -> None:
        """Create the app, its metadata and seed rows through `server`."""

    @abstractmethod
    def login(self, server: ServerProcess) -> str:
        """An access token of the app's admin, issued by `server`."""

    @abstractmethod
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

    @abstractmethod
    def variants(self) -> dict[str, Variant]: ...

    @abstractmethod
    def reset(self, bench: Bench) -> None:
        """Back to the state right after `prepare`."""

    def resources(self) -> AbstractContextManager[None]:
        """What lives as long as the set's run (the webhook receiver); nothing by default."""
        return nullcontext()


def _no_app_db(bench: Bench, dbname: str) -> None:
    if bench.database_exists(dbname):
        raise RuntimeError(
            f"database {dbname} already exists (left over from an interrupted run?); "
            f"drop it first: dropdb -h 127.0.0.1 -U postgres {dbname}"
        )


def _at_least(what: str, count: Callable[[Bench], int]) -> Verify:
    """A check that the run stored `count` >= its answered requests."""

    def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
        stored = count(bench)
        if stored < m.requests:
            result.failures.append(f"{m.name}: {m.requests} answered, {stored} {what} stored")

    return verify


class DataApi(ABSet):
    name = "data-api"
    title = "the data API on 10,000 seeded orders"
    app_db = data_api.APP_DB
    settings: dict[str, str | int] = {"auth_access_token_ttl": data_api.ACCESS_TOKEN_TTL_S}
    scenarios = {op: (op,) for op in ("list", "get", "create", "update", "nested")}

    def prepare(self, bench: Bench, server: ServerProcess, result: ScenarioResult) -> None:
        data_api.require_no_app_db(bench)
        token = data_api.create_app(server.port)
        data_api.create_schema(server.port, token)
        data_api.seed(bench)
        self.ids_file = bench.workdir / "order-ids.txt"
        data_api.write_ids(bench, self.ids_file)

    def login(self, server: ServerProcess) -> str:
        return data_api.app_login(server.port)

    def check(
        self,
        bench: Bench,
        server: ServerProcess,
        token: str,
        variants: list[str],
        result: ScenarioResult,
    ) -> None:
        for op in variants:
            data_api.CHECKS[op](bench, server.port, token, result)
        self.reset(bench)

    def variants(self) -> dict[str, Variant]:
        return {op: self._variant(op) for op in self.scenarios}

    def _variant(self, op: str) -> Variant:
        operation = data_api.OPERATIONS[op]

        def run(server: ServerProcess, token: str, seconds: int, name: str) -> Measurement:
            env = data_api.wrk_env(operation, token, self.ids_file)
            return data_api.run_wrk(server, env, seconds, name)

        def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
            data_api.check_rocketd_writes(bench, op, m.requests, result)

        return Variant(op, run, verify=verify)

    def reset(self, bench: Bench) -> None:
        data_api.reset(bench)


class Rules(ABSet):
    name = "rules"
    title = "create and update without rules and with 5 rules + a state machine"
    app_db = rules.APP_DB
    settings: dict[str, str | int] = {"auth_access_token_ttl": rules.ACCESS_TOKEN_TTL_S}
    scenarios = {
        "rule_cost": tuple(f"{op} {side}" for op in ("create", "update") for side in rules.SIDES)
    }

    def prepare(self, bench: Bench, server: ServerProcess, result: ScenarioResult) -> None:
        _no_app_db(bench, self.app_db)
        rules.setup(bench, server.port)
        self.id_files = rules.write_id_files(bench, bench.workdir)

    def login(self, server: ServerProcess) -> str:
        return rules.admin_token(server.port)

    def check(
        self,
        bench: Bench,
        server: ServerProcess,
        token: str,
        variants: list[str],
        result: ScenarioResult,
    ) -> None:
        rules.check(server.port, token, bench, result)
        self.reset(bench)

    def variants(self) -> dict[str, Variant]:
        return {name: self._variant(*name.split(" ")) for name in self.scenarios["rule_cost"]}

    def _variant(self, op: str, side: str) -> Variant:
        def run(server: ServerProcess, token: str, seconds: int, name: str) -> Measurement:
            env = rules.wrk_env(op, side, token, self.id_files[side])
            return rules.run_wrk(server, op, env, seconds, name)

        def created(bench: Bench) -> int:
            return rules.created_rows(bench, side)

        verify = _at_least("rows", created) if op == "create" else None
        return Variant(f"{op} {side}", run, verify=verify)

    def reset(self, bench: Bench) -> None:
        rules.reset(bench)


def _empty(what: str, count: Callable[[Bench], int]) -> Verify:
    def verify(bench: Bench, m: Measurement, result: ScenarioResult) -> None:
        if stored := count(bench):
            result.failures.append(f"{m.name}: {stored} {what} (expected none)")

    return verify


class _PlainOrMarked(ABSet):
    """POSTs of one body to two identical entities, `plain` and `marked` (which has a webhook or
    a workflow): every marked write leaves one row that `marks` counts, a plain write none."""

    app_name: str
    plain: str
    marked: str
    body: dict[str, object]
    what: str  # what `marks` counts, e.g. "outbox rows"

    @abstractmethod
    def marks(self, bench: Bench) -> int: ...

    def check(
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
        self.reset(bench)

    @abstractmethod
    def post(
        self, server: ServerProcess, token: str, entity: str, seconds: int, name: str
    ) -> Measurement:
        """The scenario's own wrk run of POSTs to `entity`."""

    def variants(self) -> dict[str, Variant]:
        def poster(entity: str) -> RunWrk:
            def run(server: ServerProcess, token: str, seconds: int, name: str) -> Measurement:
                return self.post(server, token, entity, seconds, name)

            return run

        plain, marked = (f"POST {self.plain}", f"POST {self.marked}")
        return {
            plain: Variant(plain, poster(self.plain), verify=_empty(self.what, self.marks)),
            marked: Variant(marked, poster(self.marked), verify=_at_least(self.what, self.marks)),
        }


class Webhooks(_PlainOrMarked):
    name = "webhooks"
    title = "POST without and with one async webhook, API-only servers (the write path)"
    app_db = webhooks.APP_DB
    settings = webhooks.server_settings(background_work=False)
    scenarios = {"write_cost": ("POST plain", "POST hooked")}
    app_name = webhooks.APP_NAME
    plain, marked = "plain", "hooked"
    body = json.loads(webhooks.BODY)
    what = "outbox rows"

    @contextmanager
    def resources(self) -> Iterator[None]:
        with webhooks.Receiver() as self.receiver:
            yield

    def prepare(self, bench: Bench, server: ServerProcess, result: ScenarioResult) -> None:
        _no_app_db(bench, self.app_db)
        webhooks.setup(server.port, f"http://127.0.0.1:{self.receiver.port}/hook")

    def login(self, server: ServerProcess) -> str:
        return webhooks.app_token(server.port)

    def marks(self, bench: Bench) -> int:
        return webhooks.outbox_rows(bench)

    def post(
        self, server: ServerProcess, token: str, entity: str, seconds: int, name: str
    ) -> Measurement:
        return run_wrk(webhooks.posts(server, entity, token, seconds), name=name)

    def reset(self, bench: Bench) -> None:
        webhooks.reset(bench)


class Workflows(_PlainOrMarked):
    name = "workflows"
    title = (
        "POST without a workflow and with one that waits at an approval, API-only servers "
        "(the trigger)"
    )
    app_db = workflows.APP_DB
    settings: dict[str, str | int] = {
        "background_work": "false",
        "auth_access_token_ttl": workflows.ACCESS_TOKEN_TTL_S,
    }
    scenarios = {"trigger_cost": ("POST plain_order", "POST held_order")}
    app_name = workflows.APP_NAME
    plain, marked = workflows.SIDES["plain"], workflows.SIDES["held"]
    body = json.loads(workflows.BODY)
    what = "hold instances"

    def prepare(self, bench: Bench, server: ServerProcess, result: ScenarioResult) -> None:
        workflows.setup(bench, server.port)

    def login(self, server: ServerProcess) -> str:
        return workflows.admin_token(server.port)

    def marks(self, bench: Bench) -> int:
        return workflows.instances(bench, workflows.HOLD["name"])

    def post(
        self, server: ServerProcess, token: str, entity: str, seconds: int, name: str
    ) -> Measurement:
        return workflows.post(server, token, entity, seconds, name)

    def reset(self, bench: Bench) -> None:
        workflows.reset(bench)


SETS: dict[str, type[ABSet]] = {cls.name: cls for cls in (DataApi, Rules, Webhooks, Workflows)}


def select(names: list[str]) -> dict[str, list[str]]:
    """Map set and scenario names to {set: [variant, ...]} in the sets' own order; no names
    means every set (the comparison issue 14 asks for)."""
    wanted = set(names) if names else set(SETS)
    chosen: dict[str, list[str]] = {}
    known: set[str] = set()
    for set_name, cls in SETS.items():
        known |= {set_name, *cls.scenarios}
        picked = [
            variant
            for scenario, variants in cls.scenarios.items()
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
    cls = SETS[set_name]
    prefix = ["ab", tag] if tag else ["ab"]
    if len(variants) == sum(len(v) for v in cls.scenarios.values()):
        return "-".join([*prefix, set_name])
    scenarios = [s for s, vs in cls.scenarios.items() if any(v in variants for v in vs)]
    return "-".join([*prefix, set_name, *scenarios])
