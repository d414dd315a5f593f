# A NixOS Proxmox container for Docker (or Podman) containers. Besides what
# nixos-lxc has, the container needs features nesting=1 and keyctl=1 (the
# inventory's `features = ["nesting", "keyctl"]`): runc creates namespaces
# and session keyrings inside it.
{ lib, modulesPath, ... }:

{
  imports = [ (modulesPath + "/virtualisation/proxmox-lxc.nix") ];

  proxmoxLXC = {
    enable = true;
    privileged = false;
    manageNetwork = false;
    manageHostName = false;
  };

  virtualisation.docker = {
    enable = true;
    # overlay2 on the container's rootfs (ZFS 2.2+ supports overlayfs).
    daemon.settings.storage-driver = "overlay2";
    autoPrune.enable = true;
  };
  # Podman instead: virtualisation.docker.enable = false; and
  # virtualisation.podman = { enable = true; dockerCompat = true; };

  time.timeZone = lib.mkDefault "UTC";
  system.stateVersion = "25.05";
}
