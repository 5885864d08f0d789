"""Deploy crisiscomms to a Prefect work pool (the scale-out set-up of ``docs/scaling.md``).

    PREFECT_API_URL=http://prefect.internal:4200/api \\
        uv run python flows/deploy.py --pool crisiscomms --email-rate-per-s 20

Idempotent; creates or updates:

- the work pool (``--pool-type process`` unless it exists already: a Docker or Kubernetes pool
  made beforehand is used as it is, with ``--image``);
- the Prefect global concurrency limits that rate-limit each channel with a configurable rate
  (``Channel.rate_setting``) across every worker (``crisiscomms-rate-<channel>``: today
  ``crisiscomms-rate-email`` and ``crisiscomms-rate-x``; ``limit`` slots refilled at
  ``slot_decay_per_second`` = the rate; ``--<channel>-rate-per-s``, default the Settings field's
  default, 0 for no limit);
- four deployments from this workspace (``flow.from_source(<workspace root>,
  "flows/run_playbook.py:...")``, the thin entrypoints every workspace has; on a container pool
  the image holds the workspace): ``publish-stage/crisiscomms`` (plans a stage and
  fans its email chunks out to) ``publish-batches/crisiscomms-batches`` (one chunk of ledger
  rows per flow run, claimed exactly once), ``resume-incident/crisiscomms``, and the flow of
  accepted events, ``handle-event/crisiscomms-intake`` (``Settings.intake_deployment``,
  ``flows/handle_event.py``: runs an event's stage, waits for approvals, publishes).

``prefect.yaml`` declares the same deployments for ``prefect deploy --all``; this script also
makes the pool and the rate limits, and is what the integration test runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crisiscomms.channels.registry import rate_settings
from crisiscomms.core.settings import Settings

ENTRYPOINT_FILE = "flows/run_playbook.py"
EVENT_ENTRYPOINT_FILE = "flows/handle_event.py"
STAGE_DEPLOYMENT = "publish-stage/crisiscomms"
BATCHES_DEPLOYMENT = "publish-batches/crisiscomms-batches"
RESUME_DEPLOYMENT = "resume-incident/crisiscomms"


def rate_limit_names() -> dict[str, str]:
    """The Prefect global concurrency limit of each channel with a configurable rate."""
    return {channel: f"crisiscomms-rate-{channel}" for channel in rate_settings()}


def default_rates() -> dict[str, float | None]:
    """Each rated channel's default requests per second: its Settings field's default."""
    fields = Settings.model_fields
    return {channel: fields[name].default for channel, name in rate_settings().items()}


def ensure_work_pool(name: str, pool_type: str = "process") -> str:
    """The pool's type (an existing pool is kept as it is)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return str(client.read_work_pool(name).type)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return pool_type


def ensure_rate_limit(name: str, rate_per_s: float) -> None:
    """A global concurrency limit used as a rate limit: ``rate_per_s`` requests per second
    across all workers, bursts up to one second's worth."""
    from prefect import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    if rate_per_s <= 0:
        raise ValueError(f"{name}: rate must be positive")
    slots = max(1, math.ceil(rate_per_s))
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                name=name, limit=slots, slot_decay_per_second=rate_per_s, active=True))
            return
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
            limit=slots, slot_decay_per_second=rate_per_s, active=True))


def workspace_source() -> Path:
    """The workspace root, which must hold the thin Prefect entrypoints."""
    from crisiscomms.core.errors import NotInWorkspaceError, WorkspaceError
    from crisiscomms.core.workspace import not_in_workspace_message

    root = Settings().workspace
    if root is None:
        raise NotInWorkspaceError(not_in_workspace_message())
    for entrypoint in (ENTRYPOINT_FILE, EVENT_ENTRYPOINT_FILE):
        if not (root / entrypoint).is_file():
            raise WorkspaceError(f"{root} has no {entrypoint} (a Prefect entrypoint); copy "
                                 "flows/ from a new workspace (crisiscomms new DIR)")
    return root


def deploy(pool: str, *, pool_type: str = "process", source: Path | None = None,
           image: str | None = None, rates: Mapping[str, float | None] | None = None,
           batches_concurrency: int | None = None,
           job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make the pool, the rate limits and the four deployments; returns what was made.

    ``rates``: requests per second by channel (None: no limit); a rated channel left out gets
    its default (:func:`default_rates`)."""
    from prefect import Flow

    event_deployment = Settings().intake_deployment
    event_flow, _, event_name = event_deployment.partition("/")
    if event_flow != "handle-event" or not event_name:
        raise ValueError("intake_deployment must be handle-event/<name>, not "
                         f"{event_deployment!r}")
    names = rate_limit_names()
    unknown = sorted(set(rates or {}) - set(names))
    if unknown:
        raise ValueError(f"no configurable rate for {unknown}; channels with one: "
                         f"{', '.join(names)}")
    kind = ensure_work_pool(pool, pool_type)
    rate_limits: dict[str, str] = {}
    for channel, rate in {**default_rates(), **(rates or {})}.items():
        if rate is not None:
            ensure_rate_limit(names[channel], rate)
            rate_limits[channel] = names[channel]

    def one(entrypoint: str, name: str, parameters: dict[str, Any],
            concurrency: int | None = None) -> str:
        # ``to_deployment().apply()``, not ``flow.deploy()``: Prefect 3.8.8's deploy asks the
        # server for the pool's online workers with ``limit: null``, which the server refuses
        # (422) under the FastAPI we pin; ``prefect deploy`` does the same (docs/scaling.md).
        options: dict[str, Any] = {
            "name": name, "work_pool_name": pool, "parameters": parameters,
            "job_variables": job_variables or {}, "concurrency_limit": concurrency}
        # ``_sync=True``: these dispatch on "is an event loop running?", which another library
        # in the same process (Playwright's sync API, a notebook) can make true.
        if image is None:  # process pool: the workers run this workspace
            loaded: Any = Flow.from_source(  # type: ignore[call-arg]
                source=str(source or workspace_source()), entrypoint=entrypoint, _sync=True)
            return str(loaded.to_deployment(**options, _sync=True)
                       .apply(work_pool_name=pool, _sync=True))
        # container pool: the image holds the workspace at its working directory
        import importlib

        file, function = entrypoint.rsplit(":", 1)
        module = importlib.import_module(f"crisiscomms.flows.{Path(file).stem}")
        flow_obj: Any = getattr(module, function)
        deployment: Any = flow_obj.to_deployment(**options, _sync=True)
        return str(deployment.apply(work_pool_name=pool, image=image, _sync=True))

    ids = {
        BATCHES_DEPLOYMENT: one(f"{ENTRYPOINT_FILE}:publish_batches", "crisiscomms-batches",
                                {"rate_limits": rate_limits}, batches_concurrency),
        STAGE_DEPLOYMENT: one(f"{ENTRYPOINT_FILE}:publish_stage", "crisiscomms",
                              {"batches_deployment": BATCHES_DEPLOYMENT}),
        RESUME_DEPLOYMENT: one(f"{ENTRYPOINT_FILE}:resume_incident", "crisiscomms",
                               {"batches_deployment": BATCHES_DEPLOYMENT}),
    }
    # the flow of accepted events; its name is the setting the API dispatches to. Its stage
    # publishes with local tasks (an acknowledgement must not wait for chunk runs to be picked
    # up); pass batches_deployment as a parameter for a large audience.
    ids[event_deployment] = one(f"{EVENT_ENTRYPOINT_FILE}:handle_event",
                                event_name, {})
    return {"work_pool": pool, "work_pool_type": kind, "rate_limits": rate_limits,
            "deployments": ids}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="crisiscomms", help="work pool name")
    parser.add_argument("--pool-type", default="process",
                        help="type of a pool this creates (process, docker, kubernetes)")
    parser.add_argument("--image", default=None,
                        help="container image holding this project (Docker/Kubernetes pools)")
    for channel, default in default_rates().items():
        parser.add_argument(f"--{channel.replace('_', '-')}-rate-per-s", type=float,
                            default=default, dest=f"{channel}_rate_per_s",
                            help=f"{channel} requests/s across all workers (0: no limit; "
                                 f"default: {default or 'no limit'})")
    parser.add_argument("--batches-concurrency", type=int, default=None,
                        help="at most this many chunk flow runs at once (deployment limit)")
    args = parser.parse_args(argv)
    from crisiscomms.core.errors import CrisisCommsError

    rates = {channel: getattr(args, f"{channel}_rate_per_s") or None
             for channel in default_rates()}
    try:
        source = workspace_source() if args.image is None else None  # before touching Prefect
        made = deploy(args.pool, pool_type=args.pool_type, source=source, image=args.image,
                      rates=rates, batches_concurrency=args.batches_concurrency)
    except CrisisCommsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
