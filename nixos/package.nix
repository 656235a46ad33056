# hyperhive as a Python application: hive-c0re, hive, hive-ag3nt, hive-m1nd.
# `python` must carry ./python-packages.nix as packageOverrides (mcp 2.x).
{
  lib,
  python,
  src,
}:
let
  project = (lib.importTOML (src + "/pyproject.toml")).project;
  # Mirrors [project.dependencies] in pyproject.toml.
  dependencies = with python.pkgs; [
    pygit2
    anyio
    aiohttp
    pydantic
    mcp
    watchfiles
    sse-starlette
    starlette
    uvicorn
    jinja2
    python-multipart
    tomli-w
    prometheus-client
  ];
in
python.pkgs.buildPythonApplication {
  pname = project.name;
  inherit (project) version;
  inherit src;
  pyproject = true;

  build-system = [ python.pkgs.setuptools ];

  inherit dependencies;
  # For the dev shell and the checks, which need the same Python environment.
  passthru.pythonDependencies = dependencies;

  # The test suite runs as its own flake check (checks.<system>.pytest) so that a
  # failing test does not make the package itself unbuildable.
  doCheck = false;
  pythonImportsCheck = [
    "hyperhive"
    "controller"
    "reconcilers"
    "gitstore"
    "harness"
    "ui"
  ];

  meta = {
    description = project.description;
    license = lib.licenses.agpl3Plus;
    mainProgram = "hive-c0re";
    platforms = lib.platforms.linux;
  };
}
