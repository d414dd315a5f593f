"""The command line: parses arguments, calls a job, prints. Nothing else.

Every command of the interface contract (docs/interface.md) is declared here with
its flags and hands over to its module in ``nixmox.cli``, which calls one job
or query and prints the result. Those modules are imported inside the
commands so that starting nixmox stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from nixmox import __version__

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="inventory file (default /etc/nixmox/nixmox.toml, then ./nixmox.toml)",
        # The inventory loader says what is wrong with the file (missing,
        # unreadable, a directory) in one line with exit 1, like any config error.
        readable=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="show what would change, change nothing")
]
ExecutableOpt = Annotated[
    Path | None,
    typer.Option(
        "--executable",
        metavar="PATH",
        help="nixmox for the units to run (default: $NIXMOX_EXECUTABLE, this script, PATH)",
        dir_okay=False,
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")]
PassthroughRootOpt = Annotated[
    Path,
    typer.Option("--host-root", metavar="DIR", help="the host's files for the passthrough checks"),
]
GuestOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--guest", metavar="NAME", help="only this guest (repeatable)", show_default=False
    ),
]


@dataclass
class Globals:
    """Options given before the command name."""

    config: Path | None = None
    json: bool = False
    verbosity: int = 0


app = typer.Typer(
    name="nixmox",
    help="Run a home Proxmox VE server (NixOS guests, a Windows gaming VM) from one inventory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nixmox {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    config: ConfigOpt = None,
    json: JsonOpt = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v", "--verbose", count=True, show_default=False, help="-v debug, -vv tracebacks"
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="warnings and errors only")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    ctx.obj = Globals(config=config, json=json, verbosity=-1 if quiet else verbose)


def _globals(ctx: typer.Context, config: Path | None, json: bool) -> Globals:
    """Merge options given after the command over those given before it."""
    base = ctx.find_root().obj
    assert isinstance(base, Globals)
    return Globals(config=config or base.config, json=json or base.json, verbosity=base.verbosity)


# -- config -------------------------------------------------------------------

config_app = typer.Typer(
    help="Validate the inventory or print its JSON Schema.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(ctx: typer.Context, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Validate the inventory: exit 0 if valid, 1 with one line per problem otherwise."""
    from nixmox.cli import config as config_command

    g = _globals(ctx, config, json)
    raise typer.Exit(config_command.check(g.config, as_json=g.json))


@config_app.command("schema")
def config_schema(ctx: typer.Context) -> None:
    """Print the inventory's JSON Schema (for editor completion)."""
    from nixmox.cli import config as config_command

    config_command.schema()


# -- doctor -------------------------------------------------------------------


@app.command()
def doctor(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="AREA",
            help="area: proxmox, guests, passthrough, storage, pools, backups, snapshots, "
            "replication, host",
        ),
    ] = None,
    host_root: Annotated[
        Path | None,
        typer.Option(
            "--host-root",
            metavar="DIR",
            help="read host files (/sys, /proc, /etc, ...) under DIR; without it, the host "
            "areas run only on a declared node (they would judge the wrong machine elsewhere)",
        ),
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Check the server's health: PASS/WARN/FAIL lines; exit 0 pass, 1 warn, 2 fail, 3 unknown."""
    from nixmox.cli import doctor

    g = _globals(ctx, config, json)
    raise typer.Exit(doctor.run(g.config, only or [], host_root, as_json=g.json))


# -- provisioning -------------------------------------------------------------


@app.command()
def plan(
    ctx: typer.Context,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="exit 0 no changes, 2 changes, 1 error")
    ] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show desired vs actual: every change, labelled by how disruptive it is."""
    from nixmox.cli import plan

    g = _globals(ctx, config, json)
    raise typer.Exit(
        plan.plan(
            g.config,
            detailed_exitcode=detailed_exitcode,
            as_json=g.json,
            verbose=g.verbosity > 0,
        )
    )


@app.command()
def apply(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before changing")] = False,
    dry_run: DryRunOpt = False,
    host_root: PassthroughRootOpt = Path("/"),
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Make Proxmox match the inventory (refusing passthrough VMs while passthrough checks fail)."""
    from nixmox.cli import plan

    g = _globals(ctx, config, json)
    raise typer.Exit(
        plan.apply(
            g.config,
            yes=yes,
            dry_run=dry_run,
            as_json=g.json,
            host_root=host_root,
            verbose=g.verbosity > 0,
        )
    )


@app.command()
def adopt(
    ctx: typer.Context,
    vmids: Annotated[
        list[int], typer.Argument(help="one or more guests to describe", metavar="VMID")
    ],
    config: ConfigOpt = None,
    json: Annotated[
        bool,
        typer.Option(
            "--json", help='print {"guests": [the same entries], "missing": [VMIDs]} instead'
        ),
    ] = False,
) -> None:
    """Print inventory TOML for guests that already exist."""
    from nixmox.cli import plan

    g = _globals(ctx, config, json)
    raise typer.Exit(plan.adopt(g.config, vmids, as_json=g.json))


@app.command()
def token(
    ctx: typer.Context,
    job: Annotated[
        list[str] | None,
        typer.Option(
            "--job",
            metavar="JOB",
            help="apply, backup, backup-verify, update-host, update-nixos, update-windows, "
            "windows-provision, template-upload, restore, rebuild (repeatable)",
        ),
    ] = None,
    token_id: Annotated[
        str | None,
        typer.Option("--token-id", metavar="ID", help="USER@REALM!NAME (default: the inventory's)"),
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Print the pveum lines granting an API token exactly what the jobs need."""
    from nixmox.cli import token as token_cli

    g = _globals(ctx, config, json)
    raise typer.Exit(token_cli.token(g.config, jobs=job or [], token_id=token_id, as_json=g.json))


# -- snapshots and retention --------------------------------------------------


snapshot_app = typer.Typer(
    help="ZFS snapshots: take and prune on policy; list, browse, guarded rollback."
)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.callback(invoke_without_command=True)
def snapshot(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    monitor: Annotated[
        bool, typer.Option("--monitor", help="Nagios check of snapshot freshness")
    ] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Take and prune ZFS snapshots on their policies (only nixmox's own are pruned)."""
    if ctx.invoked_subcommand is None:
        from nixmox.cli import snapshot

        g = _globals(ctx, config, json)
        raise typer.Exit(snapshot.run(g.config, dry_run=dry_run, monitor=monitor, as_json=g.json))


@snapshot_app.command("list")
def snapshot_list(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Argument(metavar="[DATASET]", help="under this dataset (default: all)")
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Every snapshot (nixmox's and others') with its holds."""
    from nixmox.cli import snapshot

    g = _globals(ctx, config, json)
    raise typer.Exit(snapshot.list_(g.config, dataset, as_json=g.json))


@snapshot_app.command("clone")
def snapshot_clone(
    ctx: typer.Context,
    snap: Annotated[str, typer.Argument(metavar="DATASET@SNAPSHOT", help="the snapshot")],
    mountpoint: Annotated[
        str | None,
        typer.Option(
            "--mountpoint", metavar="DIR", help="mount it here (default under /run/nixmox)"
        ),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="remove the clone nixmox made of it")
    ] = False,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Clone a snapshot to a read-only mount to copy files out (--remove cleans it up)."""
    from nixmox.cli import snapshot

    g = _globals(ctx, config, json)
    raise typer.Exit(
        snapshot.clone(
            g.config, snap, mountpoint=mountpoint, remove=remove, dry_run=dry_run, as_json=g.json
        )
    )


@snapshot_app.command("rollback")
def snapshot_rollback(
    ctx: typer.Context,
    snap: Annotated[str, typer.Argument(metavar="DATASET@SNAPSHOT", help="roll back to it")],
    destroy_later: Annotated[
        list[str] | None,
        typer.Option(
            "--destroy-later", metavar="NAME", help="a newer snapshot the rollback may destroy"
        ),
    ] = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="stop a running guest on it through the API first")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Roll a dataset back, guarded: newer snapshots named, a safety copy kept first."""
    from nixmox.cli import snapshot

    g = _globals(ctx, config, json)
    raise typer.Exit(
        snapshot.rollback(
            g.config,
            snap,
            destroy_later or [],
            stop=stop,
            yes=yes,
            dry_run=dry_run,
            as_json=g.json,
        )
    )


@app.command()
def replicate(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            metavar="DATASET",
            help="only this declared source dataset (or one in its tree)",
        ),
    ] = None,
    discard: Annotated[
        list[str] | None,
        typer.Option(
            "--discard",
            metavar="TARGET",
            help="let nixmox destroy exactly this target snapshot (REPLICA@SNAP) or roll back "
            "this replica (REPLICA) when it diverged; repeatable",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Replicate nixmox's ZFS snapshots to another pool or host, incrementally."""
    from nixmox.cli import replicate as replicate_cli

    g = _globals(ctx, config, json)
    raise typer.Exit(
        replicate_cli.run(
            g.config, dataset=dataset, discard=discard or [], dry_run=dry_run, as_json=g.json
        )
    )


@app.command(
    "prune-sim",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def prune_sim(ctx: typer.Context) -> None:
    """Proxmox's prune simulator: one time per line on stdin, each printed with its mark.

    Options: --keep-last/-hourly/-daily/-weekly/-monthly/-yearly N, --keep-all,
    --tz ZONE, --json (see `nixmox prune-sim --help`).
    """
    # `nixmox prune-sim` normally never reaches typer (see cli.main); this
    # entry keeps it in the command list and serves programmatic callers.
    from nixmox.cli import prune_sim as sim

    raise typer.Exit(sim.main(ctx.args, as_json=_globals(ctx, None, False).json))


# -- backups ------------------------------------------------------------------

backup_app = typer.Typer(help="vzdump backups with retention, and restore verification.")
app.add_typer(backup_app, name="backup")


@backup_app.callback(invoke_without_command=True)
def backup(
    ctx: typer.Context,
    guest: GuestOpt = None,
    dry_run: DryRunOpt = False,
    protected: Annotated[
        bool,
        typer.Option("--protected", help="mark the new backups protected (before risky changes)"),
    ] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Back up the guests (vzdump), then prune each one whose backup succeeded."""
    if ctx.invoked_subcommand is None:
        from nixmox.cli import backup

        g = _globals(ctx, config, json)
        raise typer.Exit(
            backup.backup(
                g.config, guest or [], dry_run=dry_run, protected=protected, as_json=g.json
            )
        )


@backup_app.command("verify")
def backup_verify(
    ctx: typer.Context, guest: GuestOpt = None, config: ConfigOpt = None, json: JsonOpt = False
) -> None:
    """Restore the newest backup to a scratch VMID, boot it, check it, destroy it."""
    from nixmox.cli import backup

    g = _globals(ctx, config, json)
    raise typer.Exit(backup.verify(g.config, guest or [], as_json=g.json))


# -- restore and rebuild ------------------------------------------------------


@app.command()
def restore(
    ctx: typer.Context,
    guest: Annotated[
        str, typer.Argument(metavar="GUEST", help="the guest (its inventory name or VMID)")
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="the newest archive taken at or before TIME (inventory's zone)",
        ),
    ] = None,
    archive: Annotated[
        str | None, typer.Option("--archive", metavar="VOLID", help="this archive (VOLID)")
    ] = None,
    as_vmid: Annotated[
        int | None,
        typer.Option(
            "--as", metavar="VMID", help="restore as a new guest VMID (links down, devices removed)"
        ),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="list the archives (age, size, last verification)")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="do not ask before restoring in place")
    ] = False,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """A guest back from a backup: in place (what is there kept first) or as a new guest."""
    from nixmox.cli import restore as restore_command

    g = _globals(ctx, config, json)
    raise typer.Exit(
        restore_command.restore(
            g.config,
            guest,
            at=at,
            archive=archive,
            as_vmid=as_vmid,
            list_only=list_only,
            yes=yes,
            dry_run=dry_run,
            as_json=g.json,
        )
    )


@app.command()
def rebuild(
    ctx: typer.Context,
    verified: Annotated[
        bool, typer.Option("--verified", help="only archives `backup verify` booted")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="restore over guests that exist (each kept first)"),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before --replace")] = False,
    dry_run: DryRunOpt = False,
    host_root: PassthroughRootOpt = Path("/"),
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The whole server from the inventory and the backups (my server died); resumable."""
    from nixmox.cli import restore as restore_command

    g = _globals(ctx, config, json)
    raise typer.Exit(
        restore_command.rebuild(
            g.config,
            verified=verified,
            replace=replace,
            yes=yes,
            dry_run=dry_run,
            host_root=host_root,
            as_json=g.json,
        )
    )


# -- updates ------------------------------------------------------------------

update_app = typer.Typer(
    help="Transactional updates: snapshot, update, check, roll back.", no_args_is_help=True
)
app.add_typer(update_app, name="update")


@update_app.command("host")
def update_host(
    ctx: typer.Context,
    node: Annotated[
        str | None, typer.Option("--node", metavar="NAME", help="only this node")
    ] = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Update the Proxmox nodes with apt, one at a time; reboot where policy allows."""
    from nixmox.cli import update_host

    g = _globals(ctx, config, json)
    raise typer.Exit(update_host.run(g.config, node, dry_run=dry_run, as_json=g.json))


@update_app.command("nixos")
def update_nixos(
    ctx: typer.Context,
    guest: GuestOpt = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Update NixOS guests: flake lock, build, switch, health check, roll back on failure."""
    from nixmox.cli import update_nixos

    g = _globals(ctx, config, json)
    raise typer.Exit(
        update_nixos.run(
            g.config, guest or [], dry_run=dry_run, as_json=g.json, verbose=g.verbosity
        )
    )


@update_app.command("windows")
def update_windows(
    ctx: typer.Context,
    guest: GuestOpt = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Windows Update through the guest agent, with a reboot policy that spares games."""
    from nixmox.cli import update_windows

    g = _globals(ctx, config, json)
    raise typer.Exit(update_windows.run(g.config, guest or [], dry_run=dry_run, as_json=g.json))


# -- observability ------------------------------------------------------------


@app.command()
def status(
    ctx: typer.Context,
    host_root: Annotated[
        Path | None,
        typer.Option(
            "--host-root",
            metavar="DIR",
            help="also run doctor's host checks on the files under DIR",
        ),
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """One screen: guests, last backups, newest snapshots, pending updates, last runs.

    Exit 0 all fine, 1 a job's last run did not succeed, 2 doctor would FAIL something.
    Doctor's host checks (host, passthrough, storage, snapshots) run on a declared
    node, or with --host-root.
    """
    from nixmox.cli import observe

    g = _globals(ctx, config, json)
    raise typer.Exit(observe.status(g.config, as_json=g.json, host_root=host_root))


@app.command()
def history(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", metavar="NAME", help="only this job")] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="at most N runs, newest first")
    ] = 20,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The run journal: what ran, when, how long, what changed, what failed."""
    from nixmox.cli import observe

    g = _globals(ctx, config, json)
    raise typer.Exit(observe.history(job, limit, as_json=g.json, config=g.config))


# -- generated artefacts, install ---------------------------------------------

render_app = typer.Typer(help="Generated artefacts: systemd units, diagrams.", no_args_is_help=True)
app.add_typer(render_app, name="render")


@render_app.command("systemd")
def render_systemd(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="directory to write the units into (default: print them)",
            file_okay=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    executable: ExecutableOpt = None,
) -> None:
    """A oneshot service and a timer per scheduled job, and the failure hook.

    The units run with the NIXMOX_STATE_DIR of this environment (default
    /var/lib/nixmox); a path under /tmp or /var/tmp is refused (PrivateTmp=yes hides it).
    """
    from nixmox.cli import units

    g = _globals(ctx, config, False)
    raise typer.Exit(units.render(g.config, out, executable))


@render_app.command("diagram")
def render_diagram(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Option("--kind", metavar="KIND", help="network, storage or updates")
    ] = "network",
    fmt: Annotated[
        str,
        typer.Option(
            "--format", metavar="FORMAT", help="mermaid (text) or html (a self-contained page)"
        ),
    ] = "mermaid",
    live: Annotated[
        bool,
        typer.Option("--live/--no-live", help="add the live state when the API is reachable"),
    ] = True,
    mermaid_js: Annotated[
        Path | None,
        typer.Option(
            "--mermaid-js",
            metavar="FILE",
            help="another mermaid.min.js to inline into the HTML page (default: "
            "$NIXMOX_MERMAID_JS, else the mermaid 11 packaged with nixmox)",
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """The network, storage and update diagrams (mermaid) from the inventory and live state."""
    from nixmox.cli import diagram

    g = _globals(ctx, config, False)
    raise typer.Exit(diagram.render(g.config, kind, fmt, live=live, mermaid_js=mermaid_js))


@app.command()
def install(
    ctx: typer.Context,
    root: Annotated[
        Path | None, typer.Option("--root", metavar="DIR", help="write under DIR, enable nothing")
    ] = None,
    config: ConfigOpt = None,
    executable: ExecutableOpt = None,
) -> None:
    """Write and enable the systemd units on a Debian/Proxmox host."""
    from nixmox.cli import units

    g = _globals(ctx, config, False)
    raise typer.Exit(units.install(g.config, root, executable))


@app.command()
def uninstall(
    ctx: typer.Context,
    root: Annotated[
        Path | None, typer.Option("--root", metavar="DIR", help="remove under DIR")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Remove exactly what `install` wrote (refused if a file changed since)."""
    from nixmox.cli import units

    raise typer.Exit(units.uninstall(root))


@app.command("unit-failed", hidden=True)
def unit_failed(
    unit: Annotated[
        str, typer.Argument(help="the unit that failed (%n of OnFailure=)", metavar="UNIT")
    ],
    config: ConfigOpt = None,
) -> None:
    """Record that a nixmox unit failed (run by nixmox-failed@.service)."""
    from nixmox.cli import units

    raise typer.Exit(units.unit_failed(unit, config))


# -- templates, Windows provisioning, ZFS caching -----------------------------

template_app = typer.Typer(help="NixOS LXC and VM images.", no_args_is_help=True)
app.add_typer(template_app, name="template")


@template_app.command("build")
def template_build(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Argument(help="nixos-lxc, nixos-lxc-docker or nixos-vm", metavar="KIND")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="where the build links its result", file_okay=False
        ),
    ] = Path("nixmox-images"),
    flake: Annotated[
        Path | None,
        typer.Option(
            "--flake",
            metavar="DIR",
            help="your copy of the template flake (default: nixmox's own)",
            file_okay=False,
        ),
    ] = None,
    ssh_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--ssh-key",
            metavar="FILE",
            help="public key file the guest accepts (repeatable; default: the inventory's "
            "[templates] ssh_keys)",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Build a NixOS template image (nix build of its image attribute)."""
    from nixmox.cli import template

    g = _globals(ctx, config, False)
    raise typer.Exit(
        template.build(kind, out=out, flake=flake, ssh_keys=ssh_key or [], config=g.config)
    )


@template_app.command("upload")
def template_upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="image to upload", dir_okay=False, metavar="FILE")],
    storage: Annotated[
        str | None,
        typer.Option("--storage", metavar="NAME", help="default: the inventory's storage for it"),
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", metavar="NAME", help="default: the only node")
    ] = None,
    vmid: Annotated[
        int | None,
        typer.Option(
            "--vmid", metavar="VMID", help="VM template: its VMID (default: the next free)"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="container: the file name on the storage; VM: its name",
        ),
    ] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Put an image on the right Proxmox storage (a VM image becomes a VM template)."""
    from nixmox.cli import template

    g = _globals(ctx, config, json)
    raise typer.Exit(
        template.upload(
            g.config, file, storage=storage, node=node, vmid=vmid, name=name, as_json=g.json
        )
    )


windows_app = typer.Typer(help="Windows guest provisioning.", no_args_is_help=True)
app.add_typer(windows_app, name="windows")


@windows_app.command("provision")
def windows_provision(
    ctx: typer.Context,
    guest: Annotated[str, typer.Option("--guest", metavar="NAME", help="the Windows guest")],
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Drivers, Steam and Rust through the guest agent, idempotently.

    Exit 0 when every step is ok (a manual step left to the user included),
    1 when one failed.
    """
    from nixmox.cli import windows

    g = _globals(ctx, config, json)
    raise typer.Exit(windows.provision(g.config, guest, dry_run=dry_run, as_json=g.json))


zfs_app = typer.Typer(help="ZFS helpers.", no_args_is_help=True)
app.add_typer(zfs_app, name="zfs")
cache_app = typer.Typer(help="L2ARC and SLOG devices.", no_args_is_help=True)
zfs_app.add_typer(cache_app, name="cache")


@cache_app.command("add")
def zfs_cache_add(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="the pool to add the device to", metavar="POOL")],
    device: Annotated[str, typer.Argument(help="/dev/disk/by-id/... of the SSD", metavar="DEVICE")],
    slog: Annotated[
        bool, typer.Option("--slog", help="add it as a SLOG (log) instead of L2ARC (cache)")
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="DEVICE",
            help="second by-id device: a mirrored SLOG",
            show_default=False,
        ),
    ] = None,
    yes: YesOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="overwrite a partition table or file system on it")
    ] = False,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add an L2ARC or SLOG device to a pool."""
    from nixmox.cli import zfs_cache

    g = _globals(ctx, config, False)
    raise typer.Exit(
        zfs_cache.add(
            g.config,
            pool,
            device,
            slog=slog,
            mirror=mirror,
            yes=yes,
            force=force,
            dry_run=dry_run,
        )
    )


@cache_app.command("remove")
def zfs_cache_remove(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="the pool to remove the device from", metavar="POOL")],
    device: Annotated[
        str,
        typer.Argument(
            help="/dev/disk/by-id/... of a cache or log device, or mirror-N", metavar="DEVICE"
        ),
    ],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remove an L2ARC or SLOG device from a pool."""
    from nixmox.cli import zfs_cache

    g = _globals(ctx, config, False)
    raise typer.Exit(zfs_cache.remove(g.config, pool, device, yes=yes, dry_run=dry_run))


# -- pools and disks ------------------------------------------------------------

pool_app = typer.Typer(
    help="Pool and disk health: scrub, TRIM, SMART, the fill forecast.", no_args_is_help=True
)
app.add_typer(pool_app, name="pool")
PoolOpt = Annotated[
    str | None,
    typer.Option("--pool", help="only this pool (default: [pool_health] pools, [[pools]], all)"),
]


@pool_app.command("scrub")
def pool_scrub(
    ctx: typer.Context,
    pool: PoolOpt = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Scrub the pools and follow each scrub to its end (paused in [pool_health] pause_during).

    Refused while a scrub or resilver runs. Exit 0 when every scrub finished, 1 otherwise.
    """
    from nixmox.cli import pool as pool_command

    g = _globals(ctx, config, json)
    raise typer.Exit(
        pool_command.operation(g.config, "scrub", pool, dry_run=dry_run, as_json=g.json)
    )


@pool_app.command("trim")
def pool_trim(
    ctx: typer.Context,
    pool: PoolOpt = None,
    dry_run: DryRunOpt = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """TRIM the pools' SSDs and follow it to the end. Exit 0 when done, 1 otherwise."""
    from nixmox.cli import pool as pool_command

    g = _globals(ctx, config, json)
    raise typer.Exit(
        pool_command.operation(g.config, "trim", pool, dry_run=dry_run, as_json=g.json)
    )


@pool_app.command("check")
def pool_check(
    ctx: typer.Context, pool: PoolOpt = None, config: ConfigOpt = None, json: JsonOpt = False
) -> None:
    """Record pool state, capacity and SMART in the journal (the forecast's history).

    Prints the pool and disk checks; exit 0, or 1 when a pool could not be read.
    """
    from nixmox.cli import pool as pool_command

    g = _globals(ctx, config, json)
    raise typer.Exit(pool_command.check(g.config, pool, as_json=g.json))


def _names_only(command: Any) -> None:
    """Show each argument by its metavar alone, as the options are: typer
    appends its Python type (``VMID <list[int]>``), which means nothing to a user."""
    for param in command.params:
        if (
            param.param_type_name == "option"
            and param.metavar is None
            and not getattr(param, "is_flag", False)
            and not getattr(param, "count", False)
        ):
            # An option nobody named: its own name says what it takes (--pool POOL).
            param.metavar = param.name.upper()
        if param.param_type_name == "argument" and param.metavar is not None:
            usage = param.metavar + ("..." if param.nargs != 1 else "")
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
            # The usage line too: `VMID...`, not typer's `{VMID}...`.
            setattr(param, "_usage_display_name", lambda usage=usage: usage)  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        _names_only(sub)


def invoke(args: list[str]) -> int:
    """Run the CLI on ``args``; usage errors become one line and exit 2."""
    try:  # typer >= 0.29 vendors click; older releases depend on it
        from typer._click import exceptions as click  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover
        from click import exceptions as click  # type: ignore[no-redef,import-not-found,unused-ignore]

    command = typer.main.get_command(app)
    _names_only(command)
    try:
        result = command.main(args, prog_name="nixmox", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
        return 0
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        typer.echo(f"nixmox: {exc.format_message()}{hint}", err=True)
        return 2
    return result if isinstance(result, int) else 0
