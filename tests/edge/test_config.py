"""Configuration: errors name their key, environment overrides work, every key is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge import schema
from edge.cli import main
from edge.config import section_keys
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid():
    config = schema.load(None, env={})
    assert config.journal.synchronous == "full"
    assert config.store.state_dir == Path("/var/lib/edge-gateway")


def test_every_error_names_its_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[store]\nid = "Not A Valid Id"\n[mqtt]\nmode = "cloud"\nreceive_maximum = "lots"\n'
        "[http]\nport = 70000\nbogus = 1\n[nosuchsection]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        schema.load(path, env={})
    keys = {key for key, _ in info.value.errors}
    assert {"store.id", "mqtt.mode", "mqtt.receive_maximum", "http.port", "http.bogus", "nosuchsection"} <= keys


def test_config_check_prints_every_error_and_exits_non_zero(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[journal]\nsynchronous = "sometimes"\ndead_letter_max = -1\n')
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "journal.synchronous: must be one of 'full', 'normal'" in err
    assert "journal.dead_letter_max: must be greater than 0" in err


def test_broken_toml_and_missing_file_are_reported(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("[store\n")
    assert main(["config", "check", str(path)]) == 1
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["config", "check", str(tmp_path / "absent.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text("[http]\nport = 9000\n")
    config = schema.load(path, env={"EDGE_HTTP__PORT": "9100", "EDGE_STORE__ID": "store-7"})
    assert config.http.port == 9100 and config.store.id == "store-7"
    with pytest.raises(ConfigError) as info:
        schema.load(path, env={"EDGE_HTTP__PORT": "many"})
    assert info.value.errors[0][0] == "http.port"


def test_shipped_production_config_is_valid():
    assert main(["config", "check", str(ROOT / "systemd" / "gateway.toml")]) == 0


def test_every_config_key_is_documented():
    documented = (ROOT / "edge" / "CONFIG.md").read_text()
    for key, _type, _default, text in section_keys(schema.config_schema()):
        assert text, f"{key} has no doc text"
        assert f"`{key}`" in documented, f"{key} is missing from edge/CONFIG.md (run: edge config reference)"


def test_documented_keys_exist():
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)`", (ROOT / "edge" / "CONFIG.md").read_text(), re.M))
    known = {key for key, *_ in section_keys(schema.config_schema())}
    assert documented <= known, f"documented but unknown: {sorted(documented - known)}"
