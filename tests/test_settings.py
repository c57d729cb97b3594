"""Settings: defaults, TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from assistant.settings import Settings, SettingsError, load_settings


def test_defaults_run_everything_under_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no radassist.toml here
    settings = load_settings(environ={})
    assert settings.storage.data_dir == Path.cwd() / "var"  # made absolute once, here
    assert settings.database_url == f"sqlite:///{Path.cwd() / 'var' / 'radassist.db'}"
    assert settings.node.ae_title == "RADASSIST" and settings.node.port == 11112
    assert settings.completion.quiet_seconds == 10
    assert settings.selection.modalities == ("CT",)


def test_toml_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(
        """
[node]
ae_title = "AINODE"
port = 104
allowed_callers = ["PACS1", "PACS2"]

[completion]
quiet_seconds = 30

[[destinations]]
name = "pacs"
kind = "dimse"
host = "10.0.0.5"
port = 4242
ae_title = "ORTHANC"
"""
    )
    env = {"RADASSIST_NODE__PORT": "11113", "RADASSIST_STORAGE__DATA_DIR": "/srv/radassist"}
    settings = load_settings(config, environ=env)
    assert settings.node.ae_title == "AINODE"
    assert settings.node.port == 11113  # the environment wins
    assert settings.node.allowed_callers == ("PACS1", "PACS2")
    assert settings.completion.quiet_seconds == 30.0
    assert settings.storage.data_dir == Path("/srv/radassist")
    assert settings.database_url == "sqlite:////srv/radassist/radassist.db"
    [pacs] = settings.destinations
    assert (pacs.name, pacs.host, pacs.port, pacs.ae_title) == ("pacs", "10.0.0.5", 4242, "ORTHANC")


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[node]\nae_title = "FROMENV"\n')
    assert load_settings(environ={"RADASSIST_CONFIG": str(config)}).node.ae_title == "FROMENV"


def test_list_from_environment() -> None:
    settings = load_settings(environ={"RADASSIST_NODE__ALLOWED_CALLERS": '["A", "B"]'})
    assert settings.node.allowed_callers == ("A", "B")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RADASSIST_NODE__PORT": "eleven"}, "node.port"),
        ({"RADASSIST_NODE__PORT": "70000"}, "node.port"),
        ({"RADASSIST_NODE__AE_TITLE": "A_TITLE_FAR_TOO_LONG"}, "node.ae_title"),
        ({"RADASSIST_NODE__AET": "X"}, "unknown setting(s) aet"),
        ({"RADASSIST_COMPLETION__QUIET_SECONDS": "0"}, "completion.quiet_seconds"),
        ({"RADASSIST_NOSUCH__KEY": "1"}, "unknown section(s) nosuch"),
        ({"RADASSIST_DATABASE__URL": "not a url"}, "database.url"),
        ({"RADASSIST_PORT": "1"}, "RADASSIST_<SECTION>__<KEY>"),
        ({"RADASSIST_DESTINATIONS": '[{"name": "p", "kind": "dimse"}]'}, "destinations[p].host"),
    ],
)
def test_bad_values_fail_naming_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(environ=env)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[node\nport = 1")
    with pytest.raises(SettingsError, match=r"broken\.toml"):
        load_settings(config, environ={})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.node.port = 1  # type: ignore[misc]


def test_relative_paths_are_made_absolute_once_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "radassist.toml").write_text(
        '[storage]\ndata_dir = "data"\n[database]\nurl = "sqlite:///db/node.db"\n'
        '[model]\npath = "models/mine"\n[web]\nsecret_key_file = "keys/secret"\n'
        '[node]\ntls_cert = "tls/node.pem"\ntls_key = "tls/node.key"\n'
        '[[destinations]]\nname = "pacs"\nhost = "h"\nae_title = "PACS"\ntls = true\n'
        'tls_ca = "tls/ca.pem"\n'
    )
    settings = load_settings(environ={})
    monkeypatch.chdir("/")  # a later change of folder changes nothing
    assert settings.storage.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'db' / 'node.db'}"
    assert settings.model.folder == tmp_path / "models" / "mine"
    assert settings.secret_key_path == tmp_path / "keys" / "secret"
    assert settings.node.tls_cert == str(tmp_path / "tls" / "node.pem")
    assert settings.destinations[0].tls_ca == str(tmp_path / "tls" / "ca.pem")


def test_paths_in_a_config_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's paths mean the same wherever the node is started from; the environment's
    and the defaults' are relative to the working folder."""
    site = tmp_path / "etc" / "radassist"
    site.mkdir(parents=True)
    (site / "radassist.toml").write_text(
        '[storage]\ndata_dir = "data"\n[database]\nurl = "sqlite:///db/node.db"\n'
        '[node]\ntls_ca = "tls/ca.pem"\n'
        '[[destinations]]\nname = "pacs"\nhost = "h"\nae_title = "PACS"\ntls = true\n'
        'tls_ca = "tls/pacs-ca.pem"\n'
    )
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(
        "../etc/radassist/radassist.toml", environ={"RADASSIST_MODEL__PATH": "models/mine"}
    )
    assert settings.storage.data_dir == site / "data"
    assert settings.database_url == f"sqlite:///{site / 'db' / 'node.db'}"
    assert settings.node.tls_ca == str(site / "tls" / "ca.pem")
    assert settings.destinations[0].tls_ca == str(site / "tls" / "pacs-ca.pem")
    assert settings.model.folder == elsewhere / "models" / "mine"  # from the environment
    assert settings.secret_key_path == site / "data" / "secret_key"  # under data_dir
