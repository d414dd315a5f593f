"""``plan``, ``apply`` and ``adopt`` as the CLI starts them.

:func:`read_plan` is the read-only query behind ``plan``. :func:`prepare_apply`
reads the plan and the missing privileges; once the user confirmed,
:meth:`ApplyRun.confirmed` hands back the work for
:func:`nixmox.runtime.run.run_job`, gated by the passthrough checks
(:func:`passthrough_blockers`). :class:`ApplySummary` is what the journal
stores. :func:`describe_guests` is ``adopt``'s query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixmox.adapters.journal import JOURNAL_FILE, Journal, state_dir
from nixmox.adapters.locks import Claim, guest_claims, job_claim
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import read_guests
from nixmox.adapters.proxmox.permissions import Missing
from nixmox.adapters.proxmox.settings import connection
from nixmox.core import jsonrows
from nixmox.core.confirm import Confirm
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.inventory.model import Guest, Inventory, ProxmoxSettings
from nixmox.provision.actual import read_guest, read_state
from nixmox.provision.adopt import guest_entry
from nixmox.provision.apply import Applier, ApplyOutcome
from nixmox.provision.desired import desired_guest
from nixmox.provision.diff import ActualState, Plan, make_plan, managed_keys, unconfirmed
from nixmox.provision.privileges import missing_privileges


@dataclass(frozen=True)
class PlanReport:
    """The plan, the privileges the token lacks for it, and the requests it took."""

    plan: Plan
    missing: list[Missing]
    api: Proxmox
    #: What the plan was made from (a rebuild reads its guests and grants from it).
    actual: ActualState

    @property
    def requests(self) -> int:
        return self.api.calls


def read_plan(inv: Inventory, api: Proxmox | None = None) -> PlanReport:
    """Desired vs actual, and what the token may not do of it (reads only)."""
    api = api or Proxmox(connection(inv.proxmox))
    actual = read_state(api, inv)
    plan = make_plan(inv, actual, recorded_keys())
    missing = missing_privileges(api, inv, plan, actual.clone_sources, actual.granted)
    return PlanReport(plan, missing, api, actual)


def recorded_keys(directory: Path | None = None) -> dict[int, frozenset[str]]:
    """Per VMID, the keys the newest apply that covered it set (``managed`` in its
    journal summary). Nothing when there is no journal yet: plan never creates one."""
    directory = directory or state_dir()
    if not (directory / JOURNAL_FILE).is_file():
        return {}
    journal = Journal(directory)
    try:
        found: dict[int, frozenset[str]] = {}
        for run in journal.runs("apply", limit=100, exact=True):
            for vmid, keys in (run.summary.get("managed") or {}).items():
                if str(vmid).isdigit() and isinstance(keys, list):
                    found.setdefault(int(vmid), frozenset(str(k) for k in keys))
        return found
    finally:
        journal.close()


def outcome_row(o: ApplyOutcome) -> dict[str, Any]:
    """One applied object as JSON (journal and ``--json``)."""
    return dict(o.__dict__)


@dataclass(frozen=True)
class ApplySummary:
    """An ``apply`` run: one outcome per object; with ``--dry-run``, the calls it would make."""

    outcomes: tuple[ApplyOutcome, ...]
    requests: int = 0
    calls: tuple[str, ...] = ()  # not journaled
    network_diffs: Mapping[str, str] = field(default_factory=dict)  # not journaled
    #: VMID -> the Proxmox keys nixmox set for that guest: what a later plan calls
    #: "unmanaged now" when the inventory drops one of them.
    managed: Mapping[str, list[str]] = field(default_factory=dict)
    #: How many of the confirmed plan's objects another run had made so meanwhile (not journaled).
    converged: int = 0

    @property
    def failed(self) -> list[ApplyOutcome]:
        return [o for o in self.outcomes if o.result == "failed"]

    @property
    def result(self) -> str:
        return "failed" if self.failed else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "outcomes": [outcome_row(o) for o in self.outcomes],
            "requests": self.requests,
            "managed": {k: list(v) for k, v in self.managed.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApplySummary:
        return cls(
            tuple(jsonrows.record(ApplyOutcome, o) for o in jsonrows.rows(data, "outcomes")),
            jsonrows.integer(data, "requests"),
            managed={
                str(k): [str(x) for x in v]
                for k, v in (data.get("managed") or {}).items()
                if isinstance(v, list)
            },
        )


def passthrough_blockers(
    inv: Inventory, api: Proxmox, host_root: Path
) -> Callable[[Guest], list[str]]:
    """The ids of FAILing passthrough checks that concern a guest: the host's
    own (IOMMU, interrupt remapping, ...) and those of the guest's devices."""
    from nixmox.core.verdict import Check, Status
    from nixmox.passthrough.checks import HOST, check_passthrough

    found: list[list[Check]] = []

    def blockers(guest: Guest) -> list[str]:
        own = f"{guest.name} ({guest.vmid})"
        if not found:  # the host's files and PCI listings, read once per apply
            found.append(check_passthrough(inv, host_root, api))
        checks = found[0]
        return sorted(
            {
                c.id
                for c in checks
                if c.status == Status.FAIL and (c.subject == HOST or c.subject.startswith(own))
            }
        )

    return blockers


#: The lock of the nodes' infrastructure (storages, bridges, the backup job): ``apply``'s
#: own job lock, which a rebuild that changes infrastructure also takes.
INFRASTRUCTURE = job_claim("apply")


@dataclass(frozen=True)
class ApplyRun:
    """An apply that has read its plan and waits for the user's yes."""

    inv: Inventory
    report: PlanReport
    host_root: Path
    dry_run: bool

    @property
    def plan(self) -> Plan:
        return self.report.plan

    @property
    def claims(self) -> list[Claim]:
        """What the apply locks: the guests its plan changes (and their nodes, shared);
        storages, bridges and the backup job are the ``apply`` job's own lock."""
        return guest_claims((g.vmid, g.node) for g in self.plan.guests if g.action != "none")

    def confirmed(
        self, confirm: Confirm, progress: Progress = SILENT
    ) -> Callable[[], ApplySummary] | None:
        """The work, once ``confirm`` said yes (a dry run does not ask); ``None`` on no.
        ``progress`` hears each object's start, task waits and end."""
        if not self.dry_run and not confirm(
            "Apply these changes?", "refusing to apply without --yes (no terminal to ask)"
        ):
            return None
        api = self.report.api
        applier = Applier(
            api,
            self.inv,
            dry_run=self.dry_run,
            passthrough_blockers=passthrough_blockers(self.inv, api, self.host_root),
            progress=progress,
        )

        def apply() -> ApplySummary:
            plan = self.plan
            if not self.dry_run:
                # Planned again under the lock: what another apply made meanwhile is not
                # made twice, and nothing the user did not see is written.
                plan = make_plan(self.inv, read_state(api, self.inv))
                extra = unconfirmed(plan, self.plan)
                if extra:
                    raise NixmoxError(
                        "the lab changed since the plan was shown; nothing applied. "
                        f"Not in the confirmed plan: {'; '.join(extra)}. Run nixmox plan again"
                    )
                if plan.errors:
                    raise NixmoxError(
                        "the lab changed since the plan was shown; nothing applied. "
                        f"The plan has errors now: {'; '.join(plan.errors)}. Run nixmox plan again"
                    )
            outcomes = applier.apply(plan)
            done = max(0, self.plan.changed - plan.changed)
            failed = {o.name for o in outcomes if o.result in ("failed", "skipped")}
            # What nixmox now set on each guest that came through: a later plan can tell
            # a key dropped from the inventory ("unmanaged now") from one never set.
            managed = {
                str(g.vmid): sorted(managed_keys(desired_guest(g)))
                for g in self.inv.guests
                if g.name not in failed and desired_guest(g).provisioned
            }
            return ApplySummary(
                tuple(outcomes),
                api.calls,
                tuple(applier.calls),
                dict(applier.network_diffs),
                managed,
                converged=done,
            )

        return apply


def prepare_apply(inv: Inventory, *, host_root: Path, dry_run: bool) -> ApplyRun:
    """Read the plan an apply would make so (see :class:`ApplyRun`)."""
    return ApplyRun(inv, read_plan(inv), host_root, dry_run)


@dataclass(frozen=True)
class Adopted:
    """``adopt``'s answer: an inventory entry per guest found, and the VMIDs not found."""

    entries: list[dict[str, Any]]
    missing: list[int]


def describe_guests(settings: ProxmoxSettings, vmids: list[int]) -> Adopted:
    """Inventory entries for existing guests, read from the cluster."""
    api = Proxmox(connection(settings))
    found = read_guests(api)
    entries = [
        guest_entry(read_guest(api, dict(found[v].raw)), found[v].name or str(v))
        for v in vmids
        if v in found
    ]
    return Adopted(entries, [v for v in vmids if v not in found])
