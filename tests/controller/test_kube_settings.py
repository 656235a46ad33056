"""Settings of the kubernetes runtime and the agent protocol over TLS: clear errors for
what would only fail later in the cluster, defaults that follow the namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import Settings
from hyperhive.cli_daemon import _parser
from reconcilers.kubesettings import KubeSettings


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {"HIVE_STATE_DIR": str(root / "s"), "HIVE_RUNTIME_DIR": str(root / "r"), **extra}


def test_the_kubernetes_runtime_without_the_agent_protocol_over_tls_is_refused(
    short_dir: Path,
) -> None:
    with pytest.raises(ValueError, match="needs the agent protocol over TLS"):
        Settings.from_env(_env(short_dir, HIVE_RUNTIME="kubernetes"))


def test_the_agent_protocol_over_tls_needs_a_certificate_and_a_key(short_dir: Path) -> None:
    with pytest.raises(ValueError, match="HIVE_TLS_CERT and HIVE_TLS_KEY"):
        Settings.from_env(_env(short_dir, HIVE_AGENT_TLS="0.0.0.0:7443"))
    with pytest.raises(ValueError, match="HOST:PORT"):
        Settings.from_env(
            _env(short_dir, HIVE_AGENT_TLS="nowhere", HIVE_TLS_CERT="c", HIVE_TLS_KEY="k")
        )


def test_kubernetes_settings_come_from_the_environment_and_follow_the_namespace(
    short_dir: Path,
) -> None:
    settings = Settings.from_env(
        _env(
            short_dir,
            HIVE_RUNTIME="kubernetes",
            HIVE_AGENT_TLS="0.0.0.0:7443",
            HIVE_TLS_CERT="c",
            HIVE_TLS_KEY="k",
            HIVE_KUBE_NAMESPACE="swarm",
            HIVE_KUBE_STORAGE_SIZE="5Gi",
        )
    )
    assert settings.kube is not None
    assert settings.kube.namespace == "swarm"
    assert settings.kube.storage_size == "5Gi"
    assert settings.kube.agent_address == "tls://hive-c0re.swarm.svc:7443"
    assert settings.kube.git_url == "http://hive-c0re.swarm.svc:7000/git/proposed.git"


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("HIVE_KUBE_NAMESPACE", "Not_A_Name", "namespace name"),
        ("HIVE_KUBE_MEMORY", "lots", "quantity"),
        ("HIVE_KUBE_STORAGE_SIZE", "1 GB", "quantity"),
        ("HIVE_KUBE_AGENT_ADDRESS", "hive-c0re:7443", "tls://"),
        ("HIVE_KUBE_TIMEOUT", "soon", "seconds"),
    ],
)
def test_bad_kubernetes_settings_are_refused_naming_the_variable(
    variable: str, value: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        KubeSettings.from_env({"HIVE_KUBE_NAMESPACE": "hive", variable: value})


def test_hive_c0re_serve_help_offers_the_kubernetes_runtime_and_agent_tls() -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--help"])
    text = out.getvalue()
    assert "kubernetes" in text and "--agent-tls" in text
