# NixOS VM test of the host module: the service starts, opens its admin socket with
# tight permissions, answers the admin client and serves the dashboard.
# Run with: nix build .#checks.x86_64-linux.nixos-vm
#
# The VM has no network and no substituters, so hive-c0re cannot build the manager's
# container there; the test checks the controller itself, which must stay up (a failed
# reconcile is a status, not a crash).
{ pkgs, module }:
pkgs.testers.runNixOSTest {
  name = "hive-c0re";

  nodes.machine = {
    imports = [ module ];
    services.hive-c0re.enable = true;
    virtualisation.memorySize = 2048;
  };

  testScript = ''
    machine.wait_for_unit("hive-c0re.service")
    machine.wait_for_file("/run/hyperhive/host.sock")
    machine.succeed("test \"$(stat -c %a /run/hyperhive/host.sock)\" = 600")
    machine.succeed("test \"$(stat -c %a /var/lib/hyperhive)\" = 700")
    machine.succeed("test \"$(stat -c %a /run/hyperhive)\" = 700")
    machine.wait_for_open_port(7000)
    machine.succeed("curl --fail --silent http://127.0.0.1:7000/ > /dev/null")
    machine.succeed("hive status --json | grep -q applied_sha")
    machine.succeed("test -d /var/lib/hyperhive/applied.git")
    machine.succeed("systemctl show hive-c0re -p Environment | grep -q HIVE_HYPERHIVE_FLAKE=path:")
  '';
}
