{
  description = "hyperhive: a GitOps controller for a swarm of Claude Code agents in nixos-containers";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Python 3.11 with mcp 2.x and its pinned companions (nixpkgs has mcp 1.x).
      pythonFor =
        pkgs:
        let
          python = pkgs.python311.override {
            self = python;
            packageOverrides = import ./nixos/python-packages.nix;
          };
        in
        python;

      hyperhiveFor =
        pkgs:
        pkgs.callPackage ./nixos/package.nix {
          python = pythonFor pkgs;
          src = self;
        };

      # Everything the tests, ruff and mypy need, beside hyperhive's own dependencies.
      devPythonFor =
        pkgs:
        (pythonFor pkgs).withPackages (
          ps:
          (hyperhiveFor pkgs).pythonDependencies
          ++ [
            ps.pytest
            ps.pytest-timeout
            ps.mypy
          ]
        );

      # A check that runs a command in a writable copy of the source.
      checkWith =
        pkgs: name: inputs: command:
        pkgs.runCommand "hyperhive-${name}" { nativeBuildInputs = inputs; } ''
          cp -r ${self} src && chmod -R u+w src && cd src
          export HOME=$TMPDIR
          ${command}
          touch $out
        '';

      systemOf = pkgs: pkgs.stdenv.hostPlatform.system;
    in
    {
      packages = forAllSystems (pkgs: rec {
        hyperhive = hyperhiveFor pkgs;
        default = hyperhive;
      });

      nixosModules = {
        hive-c0re =
          { lib, pkgs, ... }:
          {
            imports = [ ./nixos/hive-c0re.nix ];
            services.hive-c0re.package = lib.mkDefault self.packages.${systemOf pkgs}.default;
            # Per-agent flakes take hyperhive from the very source the host runs.
            services.hive-c0re.hyperhiveFlake = lib.mkDefault "path:${self}";
          };
        default = self.nixosModules.hive-c0re;

        harness-base =
          { lib, pkgs, ... }:
          {
            imports = [ ./nixos/harness-base.nix ];
            hyperhive.package = lib.mkDefault self.packages.${systemOf pkgs}.default;
          };
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (devPythonFor pkgs)
            pkgs.ruff
            pkgs.git
            pkgs.nix
          ];
        };
      });

      checks = forAllSystems (pkgs: {
        pytest =
          checkWith pkgs "pytest"
            [
              (devPythonFor pkgs)
              pkgs.git
              pkgs.nix
            ]
            # Tests that need what the sandbox lacks (the claude CLI, a browser,
            # the network) skip themselves.
            "python -m pytest -p no:cacheprovider -q";
        ruff = checkWith pkgs "ruff" [ pkgs.ruff ] "ruff check .";
        mypy = checkWith pkgs "mypy" [ (devPythonFor pkgs) ] "mypy";
        nixos-vm = import ./nixos/tests/hive-c0re.nix {
          inherit pkgs;
          module = self.nixosModules.hive-c0re;
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
