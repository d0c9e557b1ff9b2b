"""Prepared statements: hot statements run by the database driver directly, not through
SQLAlchemy's per-execution machinery.

SQLAlchemy spends tens of microseconds on each execution of a statement: an execution context,
parameter construction, events, a cursor result and its row processors (on PostgreSQL also a
greenlet hop into the sync core and back). SQLite runs this store's statements in 5-15 µs, so
there that machinery is most of a statement's cost; on PostgreSQL it about doubles the client's
CPU per round trip (measured on a primary-key read: ~230 µs through SQLAlchemy, ~115 µs through
asyncpg's own prepared statement).

A statement marked with :func:`prepared` is compiled by SQLAlchemy once per dialect and set of
parameter names, and the compiled form gives everything an execution needs: the SQL, the order
of its parameters, their bind processors and the result columns' processors. Each execution then
converts the parameters, hands the SQL to the driver (``sqlite3``; asyncpg through SQLAlchemy's
own adapter, so its statement cache and transaction handling stay in charge) and converts the
rows. Errors are raised as SQLAlchemy raises them (``IntegrityError`` and the rest).

Whatever needs SQLAlchemy's execution machinery runs through SQLAlchemy as before: Python-side
column defaults, expanding ``IN`` parameters, execution options, many-row statements with
``RETURNING``, a missing parameter or one its bind processor refuses (SQLAlchemy then raises its
own error for it). Only statements built once and kept may be marked: the mark keeps the
statement for the life of the process.
"""

from __future__ import annotations

import keyword
from collections import namedtuple
from collections.abc import Iterator
from operator import itemgetter
from typing import Any, ClassVar, Never, TypeVar, TypeVarTuple, cast, overload

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Dialect, ScalarResult
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.sql import Executable
from sqlalchemy.sql.selectable import TypedReturnsRows

E = TypeVar("E", bound=Executable)
T = TypeVar("T")
_Ts = TypeVarTuple("_Ts")

#: Marked statements by id (the statement is kept, so its id stays its own).
PREPARED: dict[int, Executable] = {}


def prepared(statement: E) -> E:
    """Mark ``statement``, built once and kept for the life of the process (a module-level
    constant, or one from ``built_once``), to run through the driver directly (module docstring)."""
    PREPARED[id(statement)] = statement
    return statement


def _one(rows: list[Any]) -> Any:
    if not rows:
        raise sa_exc.NoResultFound("No row was found when one was required")
    if len(rows) > 1:
        raise sa_exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
    return rows[0]


class Result:
    """The part of ``CursorResult`` this code base uses, over rows fetched already."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        return _one(self._rows)

    def one_or_none(self) -> Any:
        return _one(self._rows) if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return _one(self._rows)[0]

    def scalar_one_or_none(self) -> Any:
        return _one(self._rows)[0] if self._rows else None

    def scalars(self) -> Result:
        """The first column's values, with ``all``, ``first``, ``one``, ``one_or_none`` and
        iteration (a result whose "rows" are those values)."""
        return Result([row[0] for row in self._rows], self.rowcount)


class NotPreparable(Exception):
    """This statement or these parameters need SQLAlchemy's execution machinery."""


_ROW_CLASSES: dict[tuple[str, ...], type] = {}


def _plain_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _row_class(names: tuple[str, ...]) -> type:
    """A named tuple standing in for SQLAlchemy's ``Row``: index, unpack, attribute, ``_asdict``."""
    cls = _ROW_CLASSES.get(names)
    if cls is None:
        base = namedtuple("Row", names)  # type: ignore[misc]
        cls = _ROW_CLASSES[names] = type("Row", (base,), {"__slots__": (), "_mapping": property(base._asdict)})
    return cls


class Plan:
    """One prepared statement compiled for one dialect and parameter-key set."""

    __slots__ = ("_converters", "_take", "binds", "many", "row", "row_processors", "sql")

    def __init__(self, statement: Executable, dialect: Dialect, keys: list[str], many: bool) -> None:
        compiled: Any = cast(Any, statement).compile(dialect=dialect, column_keys=keys, for_executemany=many)
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.post_compile_params
            or compiled.literal_execute_params
            or compiled.escaped_bind_names
            or not compiled.positional
            or (many and compiled._result_columns)
        ):
            raise NotPreparable
        processors = compiled._bind_processors
        self.binds: list[tuple[str, Any, bool, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            if bind.callable is not None:
                raise NotPreparable
            self.binds.append((name, processors.get(name), bind.required, bind.value))
        names = [name for name, _p, _r, _d in self.binds]
        # The usual case, every bind given: one itemgetter call, then the processors in place.
        if len(names) > 1:
            self._take: Any = itemgetter(*names)
        elif names:
            only = names[0]
            self._take = lambda parameters: (parameters[only],)
        else:
            self._take = lambda parameters: ()
        self._converters = [(i, process) for i, (_n, process, _r, _d) in enumerate(self.binds) if process is not None]
        columns = compiled._result_columns
        names = [entry[0] for entry in columns]
        if len(set(names)) != len(names) or not all(_plain_name(name) for name in names):
            raise NotPreparable  # a named tuple could not stand in for SQLAlchemy's Row
        self.row: Any = _row_class(tuple(names)) if names else None
        try:  # some types choose their processor by the driver's column type, unknown here
            row_processors = [entry[3]._cached_result_processor(dialect, None) for entry in columns]
        except Exception as exc:
            raise NotPreparable from exc
        self.row_processors = [(i, p) for i, p in enumerate(row_processors) if p is not None] or None
        self.sql: str = compiled.string
        self.many = many

    def arguments(self, parameters: Any) -> list[Any]:
        try:
            values = list(self._take(parameters))
        except KeyError:  # a bind left to its default, or missing
            return self._arguments(parameters)
        for i, process in self._converters:
            values[i] = process(values[i])
        return values

    def _arguments(self, parameters: Any) -> list[Any]:
        out = []
        for name, process, required, default in self.binds:
            if name in parameters:
                value = parameters[name]
            elif required:
                raise NotPreparable  # SQLAlchemy names the missing parameter
            else:
                value = default
            out.append(value if process is None else process(value))
        return out

    def rows(self, fetched: Any) -> list[Any]:
        """The driver's rows as named tuples, each value converted by its column's type."""
        make = self.row._make
        processors = self.row_processors
        if processors is None:
            return [make(row) for row in fetched]
        out = []
        for row in fetched:
            values = list(row)
            for i, process in processors:
                values[i] = process(values[i])
            out.append(make(values))
        return out


#: Plans by (dialect name, driver), then by (statement id, parameter keys in order, many); None
#: where it cannot be prepared.
_PLANS: dict[tuple[str, str], dict[tuple[int, tuple[str, ...], bool], Plan | None]] = {}


def _plans(dialect: Dialect) -> dict[tuple[int, tuple[str, ...], bool], Plan | None]:
    plans: Any = dialect.__dict__.get("_omniretail_plans")
    if plans is None:
        plans = _PLANS.setdefault((dialect.name, dialect.driver), {})
        dialect.__dict__["_omniretail_plans"] = plans
    return cast("dict[tuple[int, tuple[str, ...], bool], Plan | None]", plans)


def plan_for(
    statement: Executable, dialect: Dialect, parameters: Any, *, many_rows: bool = True
) -> tuple[Plan, Any] | None:
    """The plan and the converted arguments for running ``statement`` with ``parameters``
    directly (a list, or a list of lists for many rows), or None to run it through SQLAlchemy
    (always, for many rows, unless ``many_rows``)."""
    if type(parameters) is dict:
        first: Any = parameters
        many = False
    elif parameters is None:
        first = {}
        many = False
    elif isinstance(parameters, list) and parameters and isinstance(parameters[0], dict):
        first = parameters[0]
        many = len(parameters) > 1
        if many and not many_rows:
            return None
    elif isinstance(parameters, dict):
        first = parameters
        many = False
    else:
        return None
    plans = _plans(dialect)
    # Keys in the caller's order: a call site passes them in one order, so this costs no plans.
    key = (id(statement), tuple(first), many)
    plan = plans.get(key, _MISSING)
    if plan is _MISSING:
        try:
            plan = Plan(statement, dialect, list(first), many)
        except NotPreparable:
            plan = None
        plans[key] = plan
    if plan is None:
        return None
    try:
        if many:
            return plan, [plan.arguments(p) for p in parameters]
        return plan, plan.arguments(first)
    except Exception:  # a value its bind processor refuses: SQLAlchemy raises its own error for it
        return None


_MISSING: Any = object()


class PreparingConnection:
    """What both databases' connections share: ``execute`` hands a prepared statement that can
    be planned to the subclass's ``_run_prepared`` (None there: run it through SQLAlchemy after
    all) and anything else to its ``_execute``; ``scalar`` and ``scalars`` build on ``execute``."""

    __slots__ = ()

    #: Whether ``_run_prepared`` takes many-row statements (a list of parameter sets).
    direct_many_rows: ClassVar[bool] = True

    @property
    def dialect(self) -> Dialect:
        raise NotImplementedError

    async def _run_prepared(self, plan: Plan, arguments: Any) -> Result | None:
        raise NotImplementedError

    async def _execute(
        self, statement: Executable, parameters: Any, execution_options: CoreExecuteOptionsParameter | None
    ) -> CursorResult[*tuple[Any, ...]]:
        raise NotImplementedError

    @overload
    async def execute(
        self,
        statement: TypedReturnsRows[*_Ts],
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[*_Ts]: ...

    @overload
    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[*tuple[Any, ...]]: ...

    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[*tuple[Any, ...]]:
        if execution_options is None and id(statement) in PREPARED:
            direct = plan_for(statement, self.dialect, parameters, many_rows=self.direct_many_rows)
            if direct is not None:
                result = await self._run_prepared(*direct)
                if result is not None:
                    return cast("CursorResult[*tuple[Any, ...]]", result)
        return await self._execute(statement, parameters, execution_options)

    async def execute_last(self, statement: Executable, parameters: Any = None) -> CursorResult[*tuple[Any, ...]]:
        """``execute`` for a block's last statement (PostgreSQL's connection may then run it
        without a transaction, if none has begun)."""
        return await self.execute(statement, parameters)

    @overload
    async def scalar(self, statement: TypedReturnsRows[Never], parameters: Any = None) -> Any | None: ...

    @overload
    async def scalar(self, statement: TypedReturnsRows[T], parameters: Any = None) -> T | None: ...

    @overload
    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    @overload
    async def scalars(self, statement: TypedReturnsRows[T], parameters: Any = None) -> ScalarResult[T]: ...

    @overload
    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]: ...

    async def scalars(self, statement: Executable, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalars()
