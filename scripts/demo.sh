#!/usr/bin/env bash
# Set everything up, start the lab (a simulated Proxmox VE on loopback, seeded
# with examples/homelab.toml's hardware) and run nixmox's main job against it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --peers

work=$(mktemp -d -t nixmox-demo.XXXXXX)
# The lab has seen 60 nights of backups already (archives on the backups storage).
.venv/bin/python -m tests.lab --host 127.0.0.2 --dir "$work" --backups 60 --windows-agent --upgrades >"$work/lab.log" 2>&1 &
lab=$!
cleanup() { kill "$lab" 2>/dev/null && wait "$lab" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "^# lab ready" "$work/lab.log" 2>/dev/null && break
  kill -0 "$lab" 2>/dev/null || { cat "$work/lab.log"; echo "demo: the lab did not start" >&2; exit 1; }
  sleep 0.2
done
grep -q "^# lab ready" "$work/lab.log" || { echo "demo: the lab did not start in 20 s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env.sh"   # NIXMOX_PVE_URL/TOKEN_ID/TOKEN/CA_FILE: the lab on loopback
export NIXMOX_STATE_DIR="$work/state"
# The example notifies ntfy.home.arpa and writes metrics under /var/lib: here,
# nothing leaves loopback and the textfile stays in the demo's directory.
export NIXMOX_NOTIFY_URLS=""
export NIXMOX_METRICS_TEXTFILE="$work/nixmox.prom"
export PATH="$PWD/.venv/bin:$PATH"
config=examples/homelab.toml

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "lab: $NIXMOX_PVE_URL (token $NIXMOX_PVE_TOKEN_ID, CA $NIXMOX_PVE_CA_FILE)"

step nixmox --config $config config check
nixmox --config "$config" config check

# The Windows VM pins its vCPUs (affinity) and passes PCI devices through: Proxmox lets only
# root@pam's own login set those, never an API token. Provisioning runs as root@pam here
# (see docs/least-privilege.md); everything after it runs with the lab's token.
as_root() { ( . "$work/root-env.sh"; "$@" ); }

step "nixmox --config $config plan   # as root@pam (password login): affinity and raw hostpci"
as_root nixmox --config "$config" plan

# pve1's files (for the passthrough checks apply runs before creating the
# Windows VM) come from a generated tree: this machine is no Proxmox host.
.venv/bin/python -m tests.hosts --out "$work/host" >/dev/null
step nixmox --config $config apply --yes --host-root '$work/host'
as_root nixmox --config "$config" apply --yes --host-root "$work/host"

step nixmox --config $config plan --detailed-exitcode   # a second plan: nothing left to do
rc=0; as_root nixmox --config "$config" plan --detailed-exitcode || rc=$?
[ "$rc" -eq 0 ] || { echo "demo: the second plan is not empty (exit $rc)" >&2; exit 1; }

step "nixmox adopt 101   # inventory for an existing guest"
nixmox --config "$config" adopt 101

step "nixmox --config $config backup   # vzdump each guest, then prune with the keep-* rule"
nixmox --config "$config" backup | grep -v ': removed ' 
echo "(each guest: 60 old nightly archives, pruned to keep-last 3, keep-daily 7, keep-weekly 4, keep-monthly 6)"

step nixmox --config $config backup verify --guest nixos-vm   # restore into a scratch VMID, boot, destroy
nixmox --config "$config" backup verify --guest nixos-vm

# The NixOS VM is destroyed by mistake (stopped, deleted with its disks), and brought
# back from its newest archive: restored, converged to the inventory, started, its agent up.
.venv/bin/python -m tests.lab.ctl destroy 101
step "nixmox --config $config restore nixos-vm --list | head -4   # its archives, newest first"
nixmox --config "$config" restore nixos-vm --list | head -4
step nixmox --config $config restore nixos-vm   # the guest is gone: nothing to replace, no question
nixmox --config "$config" restore nixos-vm
rc=0; as_root nixmox --config "$config" plan --detailed-exitcode >/dev/null || rc=$?
[ "$rc" -eq 0 ] || { echo "demo: plan is not empty after the restore (exit $rc)" >&2; exit 1; }
step "nixmox --config $config rebuild --dry-run   # what the answer to 'my server died' would do"
nixmox --config "$config" rebuild --dry-run | sed -n '1,5p'

# A container image built by `nixmox template build nixos-lxc` (here: stand-in bytes; a real
# build needs nixos-rebuild and nixpkgs) goes to the storage with vztmpl content.
head -c 65536 /dev/urandom > "$work/nixos-lxc-demo.tar.xz"
step nixmox --config $config template upload '$work/nixos-lxc-demo.tar.xz'
nixmox --config "$config" template upload "$work/nixos-lxc-demo.tar.xz"

# The gamer switches the Windows VM on (it is onboot = false); the lab answers its
# guest agent like a Windows 11 with two updates waiting, one needing a reboot.
.venv/bin/python -m tests.lab.ctl start 102
step nixmox --config $config update windows --dry-run   # precheck and scan only: the plan
nixmox --config "$config" update windows --dry-run
step nixmox --config $config windows provision --guest win11-gaming   # Steam, its logon task, Rust, MSI
nixmox --config "$config" windows provision --guest win11-gaming

# The example reaches nixos-lxc over ssh at nixos-lxc.home.arpa: here every
# *.home.arpa name points at a closed loopback port, so nothing leaves loopback
# and the dry run shows the container as unreachable next to the VM's plan.
printf 'Host *.home.arpa\n  HostName 127.0.0.1\n  Port 9\n  BatchMode yes\n' > "$work/ssh_config"
# From here on every ssh nixmox starts (updates, replication to the NAS, doctor) uses it.
export NIXMOX_SSH_CONFIG="$work/ssh_config"
step "nixmox --config $config update nixos --dry-run   # the plan per NixOS guest"
nixmox --config "$config" update nixos --dry-run
# pve-daily-update found three upgrades, a kernel among them; the node itself
# (pve1.home.arpa) is not reachable from here either.
step "nixmox --config $config update host --dry-run   # the plan for the node"
nixmox -q --config "$config" update host --dry-run

areas="--only proxmox --only guests --only host --only passthrough --only backups"
step nixmox --config $config doctor $areas --host-root '$work/host'
# shellcheck disable=SC2086
rc=0; nixmox --config "$config" doctor $areas --host-root "$work/host" || rc=$?
case $rc in
  0) echo "doctor: all checks pass" ;;
  1) echo "doctor: warnings only (exit 1)" ;;
  *) echo "doctor: exit $rc (see the FAIL lines above)" ;;
esac
.venv/bin/python -m tests.hosts --out "$work/host-nouveau" --variant gpu-on-nouveau >/dev/null
step nixmox --config $config doctor --only passthrough --host-root '$work/host-nouveau'   # the GPU bound to nouveau
rc=0; nixmox --config "$config" doctor --only passthrough --host-root "$work/host-nouveau" | grep -v '^PASS' || rc=$?

# -- ZFS snapshots on the example's pools (zfs-fuse, in a private namespace) --
if [ "$(id -u)" -eq 0 ] && command -v zfs-fuse >/dev/null && command -v faketime >/dev/null \
   && [ -e /dev/fuse ]; then
  .venv/bin/python -m tests.lab.zfs_pools --dir "$work/zfs" >"$work/zfs.log" 2>&1 &
  zfs_lab=$!
  cleanup() { kill "$zfs_lab" "$lab" 2>/dev/null; wait "$zfs_lab" "$lab" 2>/dev/null; rm -rf "$work"; }
  for _ in $(seq 1 150); do
    grep -q "^# zfs ready" "$work/zfs.log" 2>/dev/null && break
    kill -0 "$zfs_lab" 2>/dev/null || { cat "$work/zfs.log"; echo "demo: zfs-fuse did not start" >&2; exit 1; }
    sleep 0.2
  done
  # shellcheck disable=SC1091
  . "$work/zfs/env.sh"   # zfs/zpool wrappers that enter zfs-fuse's namespace
  echo
  sed -n 's/^# \([0-9]* datasets\)/zfs lab: \1/p' "$work/zfs.log"
  # A day and a half of hourly runs, the clock set by faketime: the frequent
  # policy (keep-hourly 24, keep-daily 7, ...) starts pruning after a day.
  for hour in $(seq 0 35); do
    when=$(date -u -d "2026-11-20 00:00:00 UTC + $hour hours" '+%Y-%m-%d %H:%M:%S')
    out=$(TZ=UTC faketime "$when" nixmox --config "$config" snapshot 2>&1) || { echo "$out"; exit 1; }
  done
  step "faketime '2026-11-21 12:00:00' nixmox --config $config snapshot   # the 37th hourly run"
  TZ=UTC faketime "2026-11-21 12:00:00" nixmox --config "$config" snapshot
  step "zfs list -t snapshot -o name -r tank/shared | tail -4"
  zfs list -H -o name -t snapshot -r tank/shared | tail -4
  step "faketime '2026-11-21 12:30:00' nixmox --config $config snapshot --dry-run"
  TZ=UTC faketime "2026-11-21 12:30:00" nixmox --config "$config" snapshot --dry-run
  step "faketime '2026-11-21 13:10:00' nixmox --config $config snapshot --monitor"
  rc=0; TZ=UTC faketime "2026-11-21 13:10:00" nixmox --config "$config" snapshot --monitor || rc=$?
  [ "$rc" -eq 0 ] || { echo "demo: snapshot --monitor exit $rc" >&2; exit 1; }
  # Snapshot ages under the same fake clock; storage at the real time, where the
  # lab's certificate is valid.
  # The host areas judge this machine only when told to (--host-root): here the zfs lab is pve1's.
  step "faketime '2026-11-21 13:10:00' nixmox --config $config doctor --only snapshots --host-root '$work/host'"
  rc=0; TZ=UTC faketime "2026-11-21 13:10:00" nixmox --config "$config" doctor --only snapshots --host-root "$work/host" || rc=$?
  [ "$rc" -eq 0 ] || { echo "demo: doctor --only snapshots exit $rc" >&2; exit 1; }
  step nixmox --config $config doctor --only storage --host-root '$work/host'
  rc=0; nixmox --config "$config" doctor --only storage --host-root "$work/host" || rc=$?
  [ "$rc" -eq 0 ] || { echo "demo: doctor --only storage exit $rc" >&2; exit 1; }
  step "nixmox prune-sim --keep-daily 2 --keep-weekly 1 --tz Europe/Vienna   # Proxmox's simulator"
  printf '%s\n' 2026-11-21T22:00:00Z 2026-11-21T12:00:00Z 2026-11-20T22:00:00Z \
    "2026-11-19T22:00:00Z protected" 2026-11-14T22:00:00Z 2026-11-13T22:00:00Z |
    nixmox prune-sim --keep-daily 2 --keep-weekly 1 --tz Europe/Vienna
  # Replication: the example copies tank/shared to usb/pve, a second pool here
  # (a USB disk's), and to a NAS over ssh. *.home.arpa points at a closed
  # loopback port (see above), so the NAS fails with one line and the USB copy goes on.
  step "faketime '2026-11-21 13:20:00' nixmox --config $config replicate   # first run: a full stream, then incrementals"
  rc=0; TZ=UTC faketime "2026-11-21 13:20:00" \
    nixmox -q --config "$config" replicate || rc=$?
  [ "$rc" -eq 1 ] || { echo "demo: replicate exit $rc, expected 1 (the NAS is unreachable)" >&2; exit 1; }
  step "zfs list -t snapshot -o name -r usb/pve/shared | tail -3   # pruned by the target's own keep-daily 30"
  zfs list -H -o name -t snapshot -r usb/pve/shared | tail -3
  TZ=UTC faketime "2026-11-21 14:00:00" nixmox --config "$config" snapshot >/dev/null
  step "faketime '2026-11-21 14:05:00' nixmox --config $config replicate   # the next hour: one incremental"
  rc=0; TZ=UTC faketime "2026-11-21 14:05:00" \
    nixmox -q --config "$config" replicate || rc=$?
  step "faketime '2026-11-21 14:10:00' nixmox --config $config doctor --only replication --host-root '$work/host'"
  rc=0; TZ=UTC faketime "2026-11-21 14:10:00" \
    nixmox --config "$config" doctor --only replication --host-root "$work/host" || rc=$?
  echo "(doctor exit $rc: the USB replica is fresh, the NAS cannot be read from here)"
  # One run at the real time, so status sees fresh snapshots (and their replication lag).
  nixmox --config "$config" snapshot >/dev/null
  nixmox --config "$config" replicate >/dev/null 2>&1 || true
else
  echo
  echo "snapshots: skipped (needs root, /dev/fuse, zfs-fuse and faketime: apt-get install zfs-fuse faketime)"
fi

step "head -20 \$NIXMOX_METRICS_TEXTFILE   # for node_exporter's textfile collector"
awk '!/^#/ && n++ < 20' "$NIXMOX_METRICS_TEXTFILE"

step nixmox --config $config render diagram --kind network
nixmox --config "$config" render diagram --kind network

step nixmox --config $config status --host-root '$work/host'
rc=0; nixmox --config "$config" status --host-root "$work/host" || rc=$?
echo "(status exit $rc: 0 all fine, 1 a job's last run failed, 2 doctor would FAIL something)"

echo
echo "demo finished: the lab was provisioned from the inventory (plan, apply, an empty second plan), backed up, its updates planned, the Windows VM provisioned, checked, and its datasets snapshotted, pruned and replicated to a second pool."
