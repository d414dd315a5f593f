# A NixOS Proxmox VM. `nixmox template build nixos-vm` makes a vzdump
# archive of it; `nixmox template upload` restores that as a VM template,
# which the inventory's VM guests clone (`clone = VMID or NAME`).
{ lib, modulesPath, ... }:

{
  imports = [ (modulesPath + "/virtualisation/proxmox-image.nix") ];

  proxmox = {
    qemuConf = {
      name = "nixos-vm";
      cores = 2;
      memory = 2048;
      bios = "seabios";
      net0 = "virtio=00:00:00:00:00:00,bridge=vmbr0,firewall=1";
      # The guest agent: nixmox updates and checks VMs through it.
      agent = true;
    };
    # A cloud-init drive for the first boot (user, keys, network from Proxmox).
    cloudInit = {
      enable = true;
      defaultStorage = "vm-disks";
    };
  };

  services.qemuGuest.enable = true;
  services.cloud-init = {
    enable = true;
    network.enable = true;
  };
  # Cloning to a bigger disk (`qm resize`) grows the root partition at boot.
  boot.growPartition = true;

  time.timeZone = lib.mkDefault "UTC";
  system.stateVersion = "25.05";
}
