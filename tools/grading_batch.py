"""What one grading batch may set up once instead of once per submission.

nbgrader opens its gradebook about eleven times per autograded notebook (``Gradebook(url)`` in
the converter and in five preprocessors, two more in the course's hand-grade steps), and every
``Gradebook(url)`` makes a new SQLAlchemy engine: a new database connection (on PostgreSQL a new
server process that loads its catalogue caches), an inspection of every table and an empty
SQL compilation cache; ``close()`` throws it all away. nbgrader also checks every nbgrader cell's
metadata with ``jsonschema.validate``, which checks the schema itself and builds a new validator
for each cell (twice per notebook). Measured on the 2-core course machine with PostgreSQL, this
was about 0.3 s of CPU per submission (of 1.1 to 2.3 s per submission in all, by lab).

Inside :func:`grading_batch`:

* ``Gradebook(url)`` takes the engine that the first ``Gradebook(url)`` of the batch made (that
  first one runs nbgrader's own set-up: tables created when missing, the alembic version); every
  gradebook still gets a session of its own, and the course check runs each time. ``close()``
  ends the session and keeps the engine; the batch's end disposes of every engine.
* nbgrader's metadata check validates with one validator per schema, built and checked once, and
  raises the error ``jsonschema.validate`` would raise (``best_match`` of the same errors).

Nothing read or written changes: the same queries and commits, the same validation errors. The
batch is one process's: parallel workers each run their own; outside a batch nbgrader runs as
shipped. :func:`tools.autograde.autograde` grades inside one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.Lock()
_DEPTH = 0
_ENGINES: dict[str, Any] = {}  # gradebook URL -> the batch's SQLAlchemy engine
_SAVED: dict[str, Any] = {}  # what was patched, to put back


def active() -> bool:
    """True inside :func:`grading_batch` (in this process)."""
    return _DEPTH > 0


def engines() -> dict[str, Any]:
    """The engines the current batch keeps, by gradebook URL (a copy; for tests and logs)."""
    with _LOCK:
        return dict(_ENGINES)


def _batch_init(self, db_url: str, course_id: str = "default_course", authenticator=None) -> None:
    """``Gradebook.__init__`` inside a batch: nbgrader's own the first time a URL is opened,
    then a new session on the kept engine."""
    from sqlalchemy.orm import scoped_session, sessionmaker

    with _LOCK:
        engine = _ENGINES.get(db_url)
    if engine is None:
        _SAVED["init"](self, db_url, course_id, authenticator)
        with _LOCK:
            kept = _ENGINES.setdefault(db_url, self.engine)
        if kept is not self.engine:  # another thread kept one first: use it, drop ours
            self.db.remove()
            self.engine.dispose()
            self.engine = kept
            self.db = scoped_session(sessionmaker(autoflush=True, bind=kept, future=True))
        self._kvcourse_kept = True
        return
    self.engine = engine
    self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
    self.check_course(course_id=course_id)
    self.course_id = course_id
    self.authenticator = authenticator
    self._kvcourse_kept = True


def _batch_close(self) -> None:
    """``Gradebook.close`` inside a batch: the session ends, a kept engine stays."""
    if getattr(self, "_kvcourse_kept", False):
        self.db.remove()
    else:
        _SAVED["close"](self)


class _OneValidatorPerSchema:
    """Stands in for the ``jsonschema`` module in nbgrader's metadata check: ``validate`` with a
    validator built (and its schema checked) once per distinct schema."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._validators: list[tuple[dict, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def validate(self, instance: Any, schema: dict, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:  # not the call nbgrader makes: the module's own
            return self._module.validate(instance, schema, *args, **kwargs)
        validator = next((v for s, v in self._validators if s == schema), None)
        if validator is None:
            cls = self._module.validators.validator_for(schema)
            cls.check_schema(schema)
            validator = cls(schema)
            self._validators.append((schema, validator))
        error = self._module.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


def _patch() -> None:
    from nbgrader.api import Gradebook
    from nbgrader.nbgraderformat import common

    _SAVED.update(init=Gradebook.__init__, close=Gradebook.close, jsonschema=common.jsonschema)
    Gradebook.__init__ = _batch_init
    Gradebook.close = _batch_close
    common.jsonschema = _OneValidatorPerSchema(common.jsonschema)


def _unpatch() -> None:
    from nbgrader.api import Gradebook
    from nbgrader.nbgraderformat import common

    Gradebook.__init__ = _SAVED.pop("init")
    Gradebook.close = _SAVED.pop("close")
    common.jsonschema = _SAVED.pop("jsonschema")
    with _LOCK:
        kept = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in kept:
        engine.dispose()


@contextlib.contextmanager
def grading_batch() -> Iterator[None]:
    """Grade many submissions in this process with the set-up above done once; nested calls join
    the outer batch. Everything is put back when the outermost one ends, even on an error."""
    global _DEPTH
    with _LOCK:
        _DEPTH += 1
        first = _DEPTH == 1
    if first:
        try:
            _patch()
        except BaseException:
            with _LOCK:
                _DEPTH -= 1
            raise
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            last = _DEPTH == 0
        if last:
            _unpatch()
