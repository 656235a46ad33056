# Python packages hyperhive needs at versions nixpkgs does not carry: mcp 2.x and what it
# pins exactly (mcp-types, and the httpx2/httpcore2 forks it uses). Use it as a
# `packageOverrides` of a Python interpreter (see ../flake.nix).
#
# Every package is built from its PyPI sdist. The hashes below are the sha256 of those
# exact sdists, computed locally (`pip download --no-binary :all:`, then
# `nix-hash --type sha256 --flat --base32` and converted to SRI). If a build ever reports
# a hash mismatch, refresh it with
#   nix-prefetch-url --type sha256 <the sdist url from the error>
#   nix hash to-sri --type sha256 <that hash>
pyfinal: pyprev:
let
  # The four packages compute their version with uv-dynamic-versioning from git tags,
  # which an sdist does not have; the bypass makes the plugin report the known version
  # (and fill the `=={{ version }}` pins in their dependency lists).
  fromSdist =
    {
      pname,
      version,
      hash,
      sdistName ? pname,
      extraBuildSystem ? [ ],
      dependencies,
      imports,
    }:
    pyfinal.buildPythonPackage {
      inherit pname version dependencies;
      pyproject = true;
      src = pyfinal.fetchPypi {
        pname = sdistName;
        inherit version hash;
      };
      env.UV_DYNAMIC_VERSIONING_BYPASS = version;
      build-system = [
        pyfinal.hatchling
        pyfinal.uv-dynamic-versioning
      ] ++ extraBuildSystem;
      # Lower bounds in these sdists track the newest releases; nixpkgs' versions of
      # pydantic, starlette and friends are API-compatible for what mcp uses.
      pythonRelaxDeps = true;
      # Their test suites need network services and extra plugins; the import check
      # below and hyperhive's own tests (which drive mcp for real) cover them.
      doCheck = false;
      pythonImportsCheck = imports;
    };
in
{
  httpcore2 = fromSdist {
    pname = "httpcore2";
    version = "2.16.2";
    hash = "sha256-bFGdD3tE9yafqbu00nY9s5WkojcPBG2OjgpLOCJ4FdI=";
    extraBuildSystem = [ pyfinal.hatch-fancy-pypi-readme ];
    dependencies = with pyfinal; [
      h11
      truststore
      anyio
    ];
    imports = [ "httpcore2" ];
  };

  httpx2 = fromSdist {
    pname = "httpx2";
    version = "2.16.2";
    hash = "sha256-dIthVnjwfY47GD7+ga0TtlXKiL/FbORYkhmy1EKGBXQ=";
    extraBuildSystem = [ pyfinal.hatch-fancy-pypi-readme ];
    dependencies = with pyfinal; [
      anyio
      httpcore2
      idna
      truststore
      typing-extensions
    ];
    imports = [ "httpx2" ];
  };

  mcp-types = fromSdist {
    pname = "mcp-types";
    sdistName = "mcp_types";
    version = "2.3.0";
    hash = "sha256-0eRlSe2zXuGalJQPzubRrd1+WJq36pLdqD9dhHgfw2I=";
    dependencies = with pyfinal; [
      pydantic
      typing-extensions
    ];
    imports = [ "mcp_types" ];
  };

  # Replaces nixpkgs' mcp 1.x in this interpreter's package set only.
  mcp = fromSdist {
    pname = "mcp";
    version = "2.3.0";
    hash = "sha256-ixR6UEQc8FnciMaE4K7tNofwqg85xs3nuQMw7/0rNNg=";
    dependencies =
      with pyfinal;
      [
        anyio
        httpx2
        jsonschema
        mcp-types
        opentelemetry-api
        pydantic
        pyjwt
        python-multipart
        sse-starlette
        starlette
        typing-extensions
        typing-inspection
        uvicorn
      ]
      ++ pyjwt.optional-dependencies.crypto;
    imports = [ "mcp" ];
  };
}
