"""``nixmox --help`` as typer renders it (``cli/main.py`` prints it without
loading typer). Written by scripts/gen_reference.py from cli/app.py: do not edit.
"""

HELP = """\
Usage: nixmox [OPTIONS] COMMAND [ARGS]...

  Run a home Proxmox VE server (NixOS guests, a Windows gaming VM) from one
  inventory.

Options:
  --config PATH  inventory file (default /etc/nixmox/nixmox.toml, then
                 ./nixmox.toml)
  --json         print JSON instead of text
  -v, --verbose  -v debug, -vv tracebacks
  -q, --quiet    warnings and errors only
  --version      print the version
  -h, --help     Show this message and exit.

Commands:
  doctor     Check the server's health: PASS/WARN/FAIL lines; exit 0...
  plan       Show desired vs actual: every change, labelled by how...
  apply      Make Proxmox match the inventory (refusing passthrough VMs...
  adopt      Print inventory TOML for guests that already exist.
  token      Print the pveum lines granting an API token exactly what the...
  snapshot   Take and prune ZFS snapshots on their policies (only...
  replicate  Replicate nixmox's ZFS snapshots to another pool or host,...
  prune-sim  Proxmox's prune simulator: one time per line on stdin, each...
  status     One screen: guests, last backups, newest snapshots, pending...
  history    The run journal: what ran, when, how long, what changed,...
  install    Write and enable the systemd units on a Debian/Proxmox host.
  uninstall  Remove exactly what `install` wrote (refused if a file...
  config     Validate the inventory or print its JSON Schema.
  backup     vzdump backups with retention, and restore verification.
  update     Transactional updates: snapshot, update, check, roll back.
  render     Generated artefacts: systemd units, diagrams.
  template   NixOS LXC and VM images.
  windows    Windows guest provisioning.
  zfs        ZFS helpers.
  pool       Pool and disk health: scrub, TRIM, SMART, the fill forecast."""
