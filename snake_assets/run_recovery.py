"""Cleaning up after a killed headless run, so the next one is not blocked by it.

``snake-assets run`` executes jobs in its own process. When that process is killed
(SIGKILL, OOM, a closed laptop lid), its Dagster run stays ``STARTED`` forever and
any concurrency-pool slot it claimed (the ``gpu`` pool of ``image_embeddings``, limit 1)
stays claimed: without a daemon nothing frees it, and every later embedding step waits
on it indefinitely ("Step blocked by limit for pool gpu"). Runs are therefore tagged
with the host and process that executes them, and a new ``snake-assets run`` first
marks the runs of dead processes on this host as failed and frees their slots.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import dagster as dg

log = logging.getLogger(__name__)

HOST_TAG = "snake_assets/host"
PROCESS_TAG = "snake_assets/process"
_IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _start_token(pid: int) -> str:
    """Kernel start time of ``pid`` (Linux), so a reused PID is not mistaken for the original."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(process: str) -> bool:
    pid_text, _, token = process.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return not token or _start_token(pid) in ("", token)


def run_tags() -> dict[str, str]:
    """Tags naming this host and process; attach them to every run this process executes."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: f"{pid}:{_start_token(pid)}"}


def release_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the in-progress runs of dead ``snake-assets run`` processes on this host; free stuck slots.

    Runs launched by the UI or a daemon carry no process tag and are left to Dagster's
    run monitoring. Slots still held by runs that have finished are freed too (a daemon
    would do it; a headless instance has none).

    Returns:
        The ids of the runs marked failed.
    """
    failed = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=_IN_PROGRESS, tags={HOST_TAG: socket.gethostname()})
    )
    for record in records:
        run = record.dagster_run
        process = run.tags.get(PROCESS_TAG, "")
        if process and not _alive(process):
            instance.report_run_failed(run, message=f"process {process.split(':')[0]} executing this run is gone (killed)")
            failed.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            record = instance.get_run_record_by_id(run_id)
            if record is None or record.dagster_run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
    if failed:
        log.warning("marked %d run(s) of killed snake-assets processes as failed: %s", len(failed), failed)
    return failed
