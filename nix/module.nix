# services.nixmox: nixmox's jobs as systemd timers on a NixOS machine.
#
# The same jobs, commands, timeouts and sandboxing as the units `nixmox install`
# writes on the Proxmox host (src/nixmox/schedule/units.py); the schedules come from
# the options below instead of the inventory's [schedules].
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkEnableOption mkIf mkOption types;

  cfg = config.services.nixmox;
  settingsFormat = pkgs.formats.toml { };
  isContainer = config.boot.isContainer or false;
  stateDir = "/var/lib/nixmox";

  # Option name -> unit name, nixmox arguments, default schedule, timeout,
  # the inventory table the job works on, and how it may be confined.
  jobs = {
    snapshot = {
      unit = "snapshot"; command = [ "snapshot" ]; dates = "hourly"; timeout = "15min";
      section = "snapshots"; sandbox = "zfs"; api = false;
      description = "take and prune ZFS snapshots";
    };
    replicate = {
      unit = "replicate"; command = [ "replicate" ]; dates = "*-*-* 01:00:00"; timeout = "6h";
      section = "replication"; sandbox = "zfs"; api = false;
      description = "replicate ZFS snapshots to their targets";
    };
    backup = {
      unit = "backup"; command = [ "backup" ]; dates = "*-*-* 02:30:00"; timeout = "6h";
      section = "backups"; sandbox = "api"; api = true;
      description = "back up the guests (vzdump)";
    };
    backupVerify = {
      unit = "backup-verify"; command = [ "backup" "verify" ]; dates = "Sun *-*-* 06:00:00";
      timeout = "2h"; section = "backups"; sandbox = "api"; api = true;
      description = "restore the newest backup and check it";
    };
    hostUpdate = {
      unit = "update-host"; command = [ "update" "host" ]; dates = "Sat *-*-* 04:00:00";
      timeout = "3h"; section = "nodes"; sandbox = "host"; api = true;
      description = "update the Proxmox host";
    };
    nixosUpdate = {
      unit = "update-nixos"; command = [ "update" "nixos" ]; dates = "*-*-* 03:30:00";
      timeout = "3h"; section = "guests"; api = true;
      # `pct exec` (via = "pct") is lxc-attach: it writes under /run and
      # switches AppArmor profiles, so it cannot run read-only.
      sandbox = if cfg.nixosUpdate.viaPct then "host" else "api";
      description = "update the NixOS guests";
    };
    windowsUpdate = {
      unit = "update-windows"; command = [ "update" "windows" ]; dates = "Wed *-*-* 05:00:00";
      timeout = "4h"; section = "guests"; sandbox = "api"; api = true;
      description = "update the Windows guests";
    };
    # The pool jobs work without any inventory section (every imported pool):
    # section = null asks for none.
    poolScrub = {
      unit = "pool-scrub"; command = [ "pool" "scrub" ]; dates = "Sun *-*-1..7 01:00:00";
      timeout = "2d"; section = null; sandbox = "zfs"; api = false;
      description = "scrub the ZFS pools";
    };
    poolTrim = {
      unit = "pool-trim"; command = [ "pool" "trim" ]; dates = "Sat *-*-* 01:00:00";
      timeout = "12h"; section = null; sandbox = "zfs"; api = false;
      description = "TRIM the ZFS pools";
    };
    poolCheck = {
      unit = "pool-check"; command = [ "pool" "check" ]; dates = "*-*-* 07:00:00";
      timeout = "15min"; section = null; sandbox = "zfs"; api = false;
      description = "record pool and disk health (SMART)";
    };
  };

  jobOptions = name: job: {
    enable = mkEnableOption "the timer that runs `nixmox ${lib.concatStringsSep " " job.command}`";
    dates = mkOption {
      type = types.str;
      default = job.dates;
      example = "daily";
      description = "When to run: systemd OnCalendar= syntax, see systemd.time(7).";
    };
    randomizedDelaySec = mkOption {
      type = types.str;
      default = "0";
      example = "10min";
      description = "Delay each run by a random time up to this (RandomizedDelaySec=).";
    };
    persistent = mkOption {
      type = types.bool;
      default = true;
      description = "Catch up on a run missed while the machine was off (Persistent=).";
    };
    fixedRandomDelay = mkOption {
      type = types.bool;
      default = false;
      description = "Use the same random delay every run (FixedRandomDelay=).";
    };
    timeout = mkOption {
      type = types.str;
      default = job.timeout;
      description = "Stop a run that takes longer than this (TimeoutStartSec=).";
    };
  };

  configPath =
    if cfg.configFile != null then cfg.configFile
    else settingsFormat.generate "nixmox.toml" cfg.settings;

  # The inventory as values, where evaluation can see it: `settings`, or a
  # configFile given as a Nix path (`./nixmox.toml`). A configFile given as a
  # string ("/etc/nixmox/nixmox.toml") is read only when the jobs run: null.
  inventory =
    if cfg.configFile == null then cfg.settings
    else if builtins.isPath cfg.configFile then builtins.fromTOML (builtins.readFile cfg.configFile)
    else null;
  known = inventory != null;

  # Words are store paths, fixed arguments and %-specifiers: nothing to quote.
  exec = args: lib.concatStringsSep " " ([ "${cfg.package}/bin/nixmox" "--config" "${configPath}" ] ++ args);

  # Why each setting, in short (the full reasoning is in src/nixmox/schedule/units.py):
  # read-only system with the state directory writable; /root/.ssh readable
  # for ssh; no device restrictions for /dev/zfs; a job that changes the
  # machine itself (apt, pct exec) gets only a private /tmp.
  hardening = sandbox:
    { PrivateTmp = true; }
    // lib.optionalAttrs (sandbox != "host") (
      {
        ProtectSystem = "strict";
        ProtectHome = "read-only";
        NoNewPrivileges = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RestrictRealtime = true;
      }
      # In an unprivileged Proxmox LXC /proc/sys, /sys and the cgroup tree
      # are LXC's own mounts; remounting them fails there (226/NAMESPACE).
      // lib.optionalAttrs (!isContainer) {
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
      }
      // lib.optionalAttrs (sandbox == "api") {
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
      }
      # Every run rewrites the Prometheus textfile ([metrics]): under
      # ProtectSystem=strict its directory must be named writable, as the host
      # units do. "-": a missing directory fails only the metrics write (with its
      # own message), not the whole job at namespace setup.
      // lib.optionalAttrs (cfg.metricsDir != null) {
        ReadWritePaths = [ "-${cfg.metricsDir}" ];
      });

  common = sandbox: {
    environment.NIXMOX_STATE_DIR = stateDir;
    serviceConfig = {
      Type = "oneshot";
      StateDirectory = "nixmox";
      StateDirectoryMode = "0700";
    }
    // lib.optionalAttrs (cfg.environmentFile != null) { EnvironmentFile = cfg.environmentFile; }
    // hardening sandbox;
  };

  enabledJobs = lib.filterAttrs (name: _: cfg.${name}.enable) jobs;

  service = name: job:
    let c = common job.sandbox; in
    c // {
      description = "nixmox: ${job.description}";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      onFailure = [ "nixmox-failed@%n.service" ];
      # As system.autoUpgrade: a switch of this machine's configuration must
      # neither restart nor stop the job that is running it.
      restartIfChanged = false;
      unitConfig.X-StopOnRemoval = false;
      path = [ pkgs.openssh ] ++ cfg.extraPackages;
      serviceConfig = c.serviceConfig // {
        ExecStart = exec job.command;
        TimeoutStartSec = cfg.${name}.timeout;
      }
      # The token reaches nixmox as $CREDENTIALS_DIRECTORY/nixmox-pve-token:
      # never in the environment, never in the store.
      // lib.optionalAttrs (job.api && cfg.tokenFile != null) {
        LoadCredential = [ "nixmox-pve-token:${cfg.tokenFile}" ];
      };
    };

  timer = name: job: {
    description = "nixmox: ${job.description} on schedule";
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = cfg.${name}.dates;
      Persistent = cfg.${name}.persistent;
      RandomizedDelaySec = cfg.${name}.randomizedDelaySec;
      FixedRandomDelay = cfg.${name}.fixedRandomDelay;
    };
  };

  unitsOf = f: lib.mapAttrs' (name: job: lib.nameValuePair "nixmox-${job.unit}" (f name job)) enabledJobs;

  zfsIsLocal = lib.head (cfg.settings.zfs.command or [ "zfs" ]) != "ssh";
in
{
  options.services.nixmox = {
    enable = mkEnableOption "nixmox, which keeps a Proxmox VE server snapshotted, backed up and updated";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The nixmox package.";
    };

    settings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          timezone = "Europe/Vienna";
          proxmox = { url = "https://pve.home.arpa:8006"; token_id = "nixmox@pve!automation"; };
          backups = { storage = "backup"; keep.keep-daily = 7; };
        }
      '';
      description = ''
        The inventory (nixmox.toml) as Nix values, rendered to TOML. Leave
        out secrets: they would land in the world-readable store.
      '';
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/nixmox/nixmox.toml";
      description = "An inventory file to use instead of `settings` (exactly one of the two).";
    };

    tokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/nixmox-pve-token";
      description = ''
        File holding the Proxmox API token secret, handed to the jobs with
        LoadCredential= (a string path, so it is never copied to the store).
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/nixmox.env";
      description = "EnvironmentFile= for the jobs (NIXMOX_PVE_* overrides).";
    };

    metricsDir = mkOption {
      type = types.nullOr types.str;
      default =
        if known && inventory ? metrics.textfile then dirOf inventory.metrics.textfile else null;
      defaultText = lib.literalExpression "dirOf settings.metrics.textfile, if set";
      example = "/var/lib/prometheus-node-exporter-text-files";
      description = ''
        The directory of the inventory's `[metrics] textfile`, made writable for the
        confined jobs (ReadWritePaths=). Derived from `settings` (or a configFile given
        as a Nix path); set it when configFile is a string path and has [metrics].
      '';
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ config.boot.zfs.package ]";
      description = "Programs the jobs find on PATH besides ssh (e.g. zfs).";
    };
  } // lib.recursiveUpdate (lib.mapAttrs jobOptions jobs) {
    nixosUpdate.viaPct = mkOption {
      type = types.bool;
      # Unknowable with a string configFile: the looser sandbox, which works either way.
      default = !known || lib.any (g: (g.update.via or null) == "pct") (inventory.guests or [ ]);
      defaultText = lib.literalExpression
        ''any guest in settings has update.via = "pct" (true with a string configFile)'';
      description = ''
        Whether a guest is updated through `pct exec` (update.via = "pct"): lxc-attach
        cannot run read-only, so the update job then gets only PrivateTmp=. Derived from
        `settings` (or a configFile given as a Nix path); with a string configFile it
        defaults to true: set it to false when no guest uses pct, for the stricter sandbox.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = (cfg.settings != { }) != (cfg.configFile != null);
        message = "services.nixmox: set exactly one of settings and configFile.";
      }
      {
        assertion = !(cfg.hostUpdate.enable && isContainer);
        message = ''
          services.nixmox.hostUpdate: a container cannot update (and reboot) the host it
          runs on; run it there with `nixmox install`, or from another machine.
        '';
      }
      {
        assertion = !(cfg.snapshot.enable && isContainer && cfg.configFile == null && zfsIsLocal);
        message = ''
          services.nixmox.snapshot: a container has no /dev/zfs; set
          settings.zfs.command = [ "ssh" "root@HOST" "zfs" ].
        '';
      }
    ]
    ++ lib.mapAttrsToList (name: job: {
      assertion = !(cfg.${name}.enable && isContainer && job.sandbox == "zfs" && job.unit != "snapshot");
      message = ''
        services.nixmox.${name}: zpool and smartctl need the pools' disks, which a
        container does not have; run it on the host with `nixmox install`.
      '';
    }) jobs
    ++ lib.mapAttrsToList (name: job: {
      assertion = !(cfg.${name}.enable && cfg.configFile == null && job.section != null
        && !(cfg.settings ? ${job.section}));
      message = "services.nixmox.${name}: the job needs [${toString job.section}] in services.nixmox.settings.";
    }) jobs;

    environment.systemPackages = [ cfg.package ];
    # The CLI finds the same inventory as the jobs (`nixmox status`, `doctor`).
    environment.etc = mkIf (cfg.configFile == null) {
      "nixmox/nixmox.toml".source = configPath;
    };

    systemd.services = unitsOf service // {
      "nixmox-failed@" = (common "api") // {
        description = "nixmox: record the failure of %i";
        serviceConfig = (common "api").serviceConfig // {
          ExecStart = exec [ "unit-failed" "%i" ];
          TimeoutStartSec = "2min";
        };
      };
    };
    systemd.timers = unitsOf timer;
  };
}
