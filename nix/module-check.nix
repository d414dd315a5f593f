# checks.module-eval: services.nixmox evaluated by NixOS itself (lib.evalModules
# with the real option types), on a machine and in a Proxmox LXC, and the
# generated units checked by systemd-analyze. Needs a real nixpkgs.
{ lib, pkgs, runCommand, nixosSystem, module, system }:

let
  settings = {
    timezone = "UTC";
    proxmox = { url = "https://pve.home.arpa:8006"; token_id = "nixmox@pve!automation"; };
    zfs.command = [ "ssh" "root@pve1.home.arpa" "zfs" ];
    nodes = [ { name = "pve1"; } ];
    snapshots = {
      policies.standard = { keep-daily = 7; };
      datasets = [ { dataset = "rpool/data"; policy = "standard"; } ];
    };
    backups = { storage = "backup"; };
    metrics.textfile = "/var/lib/prometheus-node-exporter/nixmox.prom";
    guests = [ {
      name = "web"; vmid = 100; kind = "lxc"; node = "pve1";
      update = { method = "nixos"; ssh = "root@web.home.arpa"; };
    } ];
  };

  machine = { container, hostUpdate ? false }: nixosSystem {
    inherit system;
    modules = [
      module
      {
        boot.isContainer = container;
        boot.loader.grub.enable = false;
        fileSystems."/" = lib.mkIf (!container) { device = "none"; fsType = "tmpfs"; };
        system.stateVersion = lib.trivial.release;
        services.nixmox = {
          enable = true;
          inherit settings;
          tokenFile = "/run/secrets/nixmox-pve-token";
          snapshot.enable = true;
          backup = { enable = true; randomizedDelaySec = "10min"; fixedRandomDelay = true; };
          nixosUpdate.enable = true;
          hostUpdate.enable = hostUpdate;
        };
      }
    ];
  };

  failing = m: map (a: a.message) (lib.filter (a: !a.assertion) m.config.assertions);
  names = [
    "nixmox-snapshot.service" "nixmox-snapshot.timer"
    "nixmox-backup.service" "nixmox-backup.timer"
    "nixmox-update-nixos.service" "nixmox-update-nixos.timer"
    "nixmox-failed@.service"
  ];
  unitFiles = m: map (n: "${m.config.systemd.units.${n}.unit}/${n}") names;

  host = machine { container = false; };
  container = machine { container = true; };
  broken = machine { container = true; hostUpdate = true; };
in
runCommand "nixmox-module-eval" {
  # Evaluated when the check is built (lazily: `nix flake show` stays cheap).
  assertions =
    assert failing host == [ ];
    assert failing container == [ ];
    assert failing broken != [ ];
    "hold";
} ''
  ${pkgs.systemd}/bin/systemd-analyze verify --man=no ${lib.concatStringsSep " " (unitFiles host)}
  ${pkgs.systemd}/bin/systemd-analyze verify --man=no ${lib.concatStringsSep " " (unitFiles container)}
  touch $out
''
