# The hyperhive host service: hive-c0re reconciling agents into nixos-containers.
#
# Import it through the flake (`hyperhive.nixosModules.hive-c0re`), which also fills in
# `package` and `hyperhiveFlake`; then `services.hive-c0re.enable = true` is all a host
# needs. hive-c0re runs as root because nixos-container does: it writes
# /etc/nixos-containers and builds system closures.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.hive-c0re;
  inherit (lib) mkOption types;
  dashboard = "${cfg.dashboard.address}:${toString cfg.dashboard.port}";
in
{
  options.services.hive-c0re = {
    enable = lib.mkEnableOption "hive-c0re, the hyperhive controller";

    package = mkOption {
      type = types.package;
      description = "The hyperhive package (hive-c0re and the `hive` admin client).";
    };

    hyperhiveFlake = mkOption {
      type = types.str;
      example = "path:/nix/store/...-source";
      description = ''
        Flake reference of hyperhive itself, used as the `hyperhive` input of every
        per-agent flake (exported as HIVE_HYPERHIVE_FLAKE). The flake module sets it to
        its own source, so containers run the same hyperhive as the host.
      '';
    };

    nixpkgsFlake = mkOption {
      type = types.str;
      default = "path:${pkgs.path}";
      defaultText = lib.literalExpression ''"path:''${pkgs.path}"'';
      description = ''
        Flake reference of the nixpkgs the containers are built from (exported as
        HIVE_NIXPKGS_FLAKE). The default is the host's own nixpkgs, already in the
        store, so building a container fetches nothing.
      '';
    };

    stateDir = mkOption {
      type = types.path;
      default = "/var/lib/hyperhive";
      description = "Repositories, sqlite store, per-agent flakes, credentials and notes.";
    };

    runtimeDir = mkOption {
      type = types.path;
      default = "/run/hyperhive";
      description = "The admin socket host.sock and each agent's socket dir.";
    };

    dashboard.address = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = ''
        Address the dashboard listens on. Anything but loopback needs
        HIVE_DASHBOARD_TOKEN (in `environmentFile`): hive-c0re refuses to start without it.
      '';
    };

    dashboard.port = mkOption {
      type = types.port;
      default = 7000;
      description = "Port the dashboard listens on.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the dashboard port (set dashboard.address too, to be reachable).";
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/hive-c0re.env";
      description = ''
        systemd EnvironmentFile for hive-c0re (kept out of the store), e.g. for
        HIVE_* overrides or proxy settings.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    boot.enableContainers = true;

    # nixos-container builds each agent's flake with `nix build`.
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];

    environment.systemPackages = [ cfg.package ];

    # tmpfiles rather than StateDirectory/RuntimeDirectory: both paths are options
    # (StateDirectory only takes paths under /var/lib), and systemd would delete a
    # RuntimeDirectory when hive-c0re stops, pulling the socket dirs out from under
    # running containers, which outlive the daemon.
    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0700 root root - -"
      "d ${cfg.runtimeDir} 0700 root root - -"
    ];

    systemd.services.hive-c0re = {
      description = "hyperhive controller (hive-c0re)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "systemd-tmpfiles-setup.service"
      ];
      path = [
        pkgs.nixos-container
        config.nix.package
        pkgs.git
        config.systemd.package # machinectl, journalctl
      ];
      environment = {
        HIVE_HYPERHIVE_FLAKE = cfg.hyperhiveFlake;
        HIVE_NIXPKGS_FLAKE = cfg.nixpkgsFlake;
      };
      serviceConfig = {
        ExecStart = lib.concatStringsSep " " [
          "${cfg.package}/bin/hive-c0re serve"
          "--runtime nixos"
          "--state-dir ${cfg.stateDir}"
          "--runtime-dir ${cfg.runtimeDir}"
          "--dashboard ${dashboard}"
        ];
        EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
        Restart = "on-failure";
        RestartSec = 2;
        UMask = "0077";
        # Containers run in machine.slice, not in this unit, so they keep running while
        # hive-c0re restarts; only its own children (builds in flight) are stopped.
        KillMode = "control-group";
        # Building a container can take long; it is bounded per command inside.
        TimeoutStopSec = 30;
        # Every socket connection is a descriptor: systemd's default soft limit (1,024)
        # is what one agent's connection flood used to exhaust. The caps per socket
        # (hive-c0re serve --agent-connections, default 32) keep real use far below.
        LimitNOFILE = 65536;
      };
    };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.dashboard.port;
  };
}
