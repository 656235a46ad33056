"""The composition roots: what wires the packages together, above all of them.

`hyperhive.daemon` builds hive-c0re from the controller and the dashboard (ui), and
`hyperhive.harness` runs an agent from the harness and its page (ui). Nothing below
imports this package, so imports keep flowing one way: `ui -> controller -> reconcilers
-> gitstore`, and the harness reaches the controller only through the socket protocol.
"""
