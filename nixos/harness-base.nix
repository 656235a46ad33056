# The base configuration of every agent container: the harness service and its
# environment, claude-code, and the container basics. Each per-agent flake (generated
# by hive-c0re, see reconcilers/nixflake.py) imports this and sets `hyperhive.agent`.
#
# The host dirs are bind-mounted by hive-c0re through the container's nspawn flags
# (socket dir -> /run/hive, credentials -> /root/.claude, notes -> /state, the
# manager's clone -> /agents, the harness's key read-only -> /run/hive-key); this module
# only relies on those paths.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hyperhive.agent;
  inherit (lib) mkOption types;
  isManager = cfg.role == "manager";
  claude = config.hyperhive.claudePackage;
  harness = if isManager then "hive-m1nd" else "hive-ag3nt";
in
{
  options.hyperhive = {
    package = mkOption {
      type = types.package;
      description = "The hyperhive package providing the harness.";
    };

    claudePackage = mkOption {
      type = types.package;
      default = pkgs.claude-code;
      defaultText = lib.literalExpression "pkgs.claude-code";
      description = "The Claude Code CLI the harness runs for each turn.";
    };

    agent = {
      name = mkOption {
        type = types.strMatching "[a-z][a-z0-9-]{0,30}";
        description = "The agent's name (HIVE_AGENT).";
      };
      role = mkOption {
        type = types.enum [
          "manager"
          "agent"
        ];
        default = "agent";
        description = "`manager` runs hive-m1nd with the manager tools, `agent` hive-ag3nt.";
      };
      model = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Model from agent.toml (HIVE_MODEL); null for the hive default.";
      };
      prompt = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "prompt.md of the agent, appended to its system prompt.";
      };
      rev = mkOption {
        type = types.str;
        default = "";
        description = "Applied-tree rev this container was built from (restarts the harness).";
      };
      harnessVersion = mkOption {
        type = types.str;
        default = "";
        description = "hyperhive version this container was built for.";
      };
    };
  };

  config = {
    boot.isContainer = true;
    networking.hostName = lib.mkDefault (if isManager then cfg.name else "h-${cfg.name}");
    networking.useDHCP = false;

    # hive-c0re runs containers in the host's network namespace (PRIVATE_NETWORK=0);
    # systemd-nspawn withholds CAP_NET_ADMIN there, so a guest firewall would only fail to
    # load and fail `nixos-container update`. The agent listens on no TCP port: its page
    # is a unix socket in /run/hive-page, which hive-c0re's dashboard proxies.
    networking.firewall.enable = lib.mkDefault false;

    # claude-code is unfree. Each container evaluates its own nixpkgs, so the host's
    # allowUnfree never reaches here: allow exactly claude-code, inline.
    nixpkgs.config.allowUnfreePredicate = lib.mkDefault (
      pkg: builtins.elem (lib.getName pkg) [ "claude-code" ]
    );

    environment.systemPackages = [
      claude
      config.hyperhive.package
      pkgs.git
    ];

    environment.etc = lib.optionalAttrs (cfg.prompt != null) {
      "hyperhive/prompt.md".source = cfg.prompt;
    };

    systemd.services.hive-agent = {
      description = "hyperhive harness of ${cfg.name}";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      path = [
        claude
        pkgs.git
        # The harness runs each claude turn in a bwrap sandbox of its own, where the key
        # at /run/hive-key and the harness itself are out of reach (harness/confine.py).
        pkgs.bubblewrap
      ];
      environment =
        {
          HIVE_AGENT = cfg.name;
          HIVE_SOCKET = "/run/hive/mcp.sock";
          HIVE_STATE = "/state";
          HIVE_WEB_SOCKET = "/run/hive-page/page.sock";
          CLAUDE_CONFIG_DIR = "/root/.claude";
          HIVE_CLAUDE_BIN = "${claude}/bin/claude";
          # Minted by hive-c0re at every container start; unlocks the socket's
          # harness-only commands (turn state, leases).
          HIVE_KEY_FILE = "/run/hive-key/harness.key";
          HIVE_CLAUDE_SANDBOX = "bwrap";
          HOME = "/root";
        }
        // lib.optionalAttrs isManager { HIVE_AGENTS_DIR = "/agents"; }
        // lib.optionalAttrs (cfg.model != null) { HIVE_MODEL = cfg.model; }
        // lib.optionalAttrs (cfg.prompt != null) { HIVE_PROMPT_FILE = "/etc/hyperhive/prompt.md"; };
      # `nixos-container update` reloads the container (switch-to-configuration), which
      # restarts only changed units: these make any change of the agent's applied files
      # or of hyperhive restart the harness, as an update promises.
      restartTriggers = [
        cfg.rev
        cfg.harnessVersion
        (toString cfg.model)
      ] ++ lib.optional (cfg.prompt != null) cfg.prompt;
      serviceConfig = {
        ExecStart = "${config.hyperhive.package}/bin/${harness} serve";
        WorkingDirectory = "/state";
        Restart = "always";
        RestartSec = 2;
      };
    };

    system.stateVersion = lib.mkDefault "25.11";
  };
}
