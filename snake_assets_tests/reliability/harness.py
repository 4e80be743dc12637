"""Test launcher: run ``snake-assets`` or a job of the code location, optionally SIGKILLing itself at a chosen instant.

Usage (test code only; nothing in the product reads it)::

    python -m snake_assets_tests.reliability.harness [--kill-at POINT] cli run --data-dir ...
    python -m snake_assets_tests.reliability.harness [--kill-at POINT] job [--shards N] JOB_NAME [ASSET_KEY ...]
    python -m snake_assets_tests.reliability.harness serve

``serve`` imports the code location once and then forks one child process per request
(JSON lines on stdin: ``{"spawn": [args...], "env": {...}, "log": path}`` answers
``{"pid": n}``; ``{"wait": n}`` answers ``{"pid": n, "status": rc or -signal}``). Each
child is a fresh process running the command above, minus ~10 s of imports, which keeps
a suite of many killed-and-rerun pipelines short. Nothing has started threads or
opened storage before the fork.

Kill points pin the crash to the most dangerous instant instead of a lucky moment:

- ``replace:NAME``: when a file called ``NAME`` is about to be renamed into place, i.e.
  its temporary file is complete and the rename has not happened (Parquet shard,
  checkpoint bundle, submission);
- ``commit:TABLE``: when the transaction replacing ``TABLE`` in DuckDB is about to
  commit, i.e. the new rows are written but not committed.

The kill is a real ``SIGKILL`` of this process: no ``finally`` block, no atexit, no
flush runs, exactly as when the OOM killer or ``kill -9`` strikes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    sys.stderr.write("harness: SIGKILL now\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_on_replace(name: str) -> None:
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name and Path(src).stat().st_size > 0:
            _die()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace


class _ConnectionProxy:
    """A DuckDB connection that dies on the COMMIT of a transaction that replaced ``table``."""

    def __init__(self, conn, table: str) -> None:
        self._conn, self._table, self._armed = conn, table, False

    def execute(self, sql, *args, **kwargs):
        text = str(sql).strip()
        if text.startswith(f"CREATE OR REPLACE TABLE {self._table} "):
            self._armed = True
        if text.upper() == "COMMIT" and self._armed:
            _die()
        return self._conn.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _kill_on_commit(table: str) -> None:
    import duckdb

    real_connect = duckdb.connect
    duckdb.connect = lambda *a, **k: _ConnectionProxy(real_connect(*a, **k), table)


def _child(request: dict) -> None:
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = os.open(request["log"] + ".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(request["env"])
    rc = 1
    try:
        rc = main(request["spawn"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def serve() -> int:
    import json

    import snake_assets.cli  # noqa: F401  (the imports every child would otherwise repeat)
    from snake_assets.definitions import defs

    defs()
    for line in sys.stdin:
        request = json.loads(line)
        if "spawn" in request:
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer = {"pid": pid}
        else:
            _, status = os.waitpid(request["wait"], 0)
            answer = {"pid": request["wait"], "status": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv == ["serve"]:
        return serve()
    if argv[:1] == ["--kill-at"]:
        kind, _, what = argv[1].partition(":")
        {"replace": _kill_on_replace, "commit": _kill_on_commit}[kind](what)
        argv = argv[2:]
    if argv[0] == "cli":
        from snake_assets.cli import main as cli_main

        return cli_main(argv[1:])
    if argv[0] == "job":
        import logging

        import dagster as dg

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("snake_assets").setLevel(logging.INFO)  # as the CLI does

        from snake_assets.definitions import defs

        args = argv[1:]
        run_config = {}
        if args[:1] == ["--shards"]:
            run_config = {"ops": {"image_manifest": {"config": {"num_shards": int(args[1])}}}}
            args = args[2:]
        job = defs().resolve_job_def(args[0])
        selection = [dg.AssetKey(k) for k in args[1:]] or None
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, asset_selection=selection, run_config=run_config
            )
        return 0 if result.success else 1
    raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
