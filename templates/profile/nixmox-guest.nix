# nixmox.guest: what a NixOS guest needs so nixmox can look after it.
#
# - SSH for nixmox and you: sshd with keys only, the keys as an option
#   (the templates fill it from an `authorized_keys` file next to flake.nix,
#   which `nixmox template build --ssh-key FILE` writes).
# - What `nixmox update nixos` checks after a switch: sshd answers, systemd
#   is reachable (`systemctl is-system-running`, no failed units), flakes on.
# - Optionally the update job itself, on this guest's own timer, through
#   services.nixmox (nix/module.nix), for a guest that prefers to update itself.
#
# Import it together with services.nixmox: the root flake's
# `nixosModules.guest` does both.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkEnableOption mkIf mkOption types;
  cfg = config.nixmox.guest;
in
{
  imports = [
    (lib.mkRemovedOptionModule [ "nixmox" "guest" "user" ] ''
      nixmox logs in to a guest as root (update.ssh = "root@GUEST", keys only): every
      step of an update is root's, so there is no other login user to configure.
    '')
  ];

  options.nixmox.guest = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Set up this machine as a guest nixmox manages.";
    };

    authorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3Nza... nixmox@pve1" ];
      description = ''
        SSH public keys allowed to log in as root (nixmox's own key among them): the
        inventory's `update.ssh` is `root@GUEST`.
      '';
    };

    selfUpdate = {
      enable = mkEnableOption ''
        `nixmox update nixos` on this guest's own timer (services.nixmox.nixosUpdate).
        Set services.nixmox.settings (or configFile) to an inventory naming this guest'';
      dates = mkOption {
        type = types.str;
        default = "*-*-* 04:00:00";
        description = "When to update: systemd OnCalendar= syntax.";
      };
      randomizedDelaySec = mkOption {
        type = types.str;
        default = "30min";
        description = "Spread the guests' updates (RandomizedDelaySec=).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.authorizedKeys != [ ];
        message = ''
          nixmox.guest.authorizedKeys is empty: neither nixmox nor you could log in over SSH.
          Put the keys in authorized_keys next to flake.nix (nixmox template build --ssh-key FILE).
        '';
      }
    ];

    services.openssh = {
      enable = true;
      openFirewall = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        # nixmox logs in as root, with a key (the `user` option is gone: see above).
        PermitRootLogin = "prohibit-password";
      };
    };
    users.users.root.openssh.authorizedKeys.keys = cfg.authorizedKeys;

    # The update job builds and switches from a flake on the guest, and commits
    # the updated lock with git.
    nix.settings.experimental-features = [ "nix-command" "flakes" ];
    environment.systemPackages = [ pkgs.git ];

    # The health check reads `systemctl is-system-running`: a unit that fails
    # by design in a container (nixpkgs#157918) would make every update "degraded".
    systemd.suppressedSystemUnits = mkIf config.boot.isContainer [ "sys-kernel-debug.mount" ];

    services.nixmox = mkIf cfg.selfUpdate.enable {
      enable = true;
      nixosUpdate = {
        enable = true;
        inherit (cfg.selfUpdate) dates randomizedDelaySec;
      };
    };
  };
}
