from __future__ import annotations

import argparse
import re
from pathlib import Path

from devices.config import CONFIG_SECTIONS
from edge.config import section_keys
from edge.simulate import add_commands

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_key_is_in_the_devices_docs() -> None:
    docs = (ROOT / "devices" / "README.md").read_text(encoding="utf-8")
    for key, _type, _default, text in section_keys(CONFIG_SECTIONS):
        assert f"| `{key}` |" in docs and text in docs, f"devices/README.md does not describe {key} as in config.py"


def test_simulate_command_and_its_options_are_documented() -> None:
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers())
    help_text = parser.parse_known_args(["simulate"])[0]
    assert help_text.func.__name__ == "cmd_simulate"
    docs = (ROOT / "devices" / "README.md").read_text(encoding="utf-8")
    for option in ("--hours", "--speed", "--seed", "--fleet"):
        assert option in docs


def test_udev_rules_give_stable_names_and_groups() -> None:
    text = (ROOT / "hardware" / "99-edge-gateway.rules").read_text(encoding="utf-8")
    rules = re.sub(r"\\\n\s*", " ", text)
    lines = [line for line in rules.splitlines() if line.strip() and not line.startswith("#")]
    for line in lines:
        assert "==" in line and ("GROUP=" in line or "SYMLINK+=" in line), line
        for part in (p.strip() for p in line.split(",")):
            assert re.match(r'^[A-Z_]+(\{[^}]+\})?(==|!=|\+=|=|:=)"[^"]*"$', part), part
    for name in ("edge-pos0", "edge-pos1", "edge-display0"):
        assert f'SYMLINK+="{name}"' in rules
    assert 'GROUP="dialout"' in rules and 'GROUP="bluetooth"' in rules
    readme = (ROOT / "hardware" / "README.md").read_text(encoding="utf-8")
    for topic in ("CYW43455", "Raspberry Pi 5", "CM4", "FTDI", "CP210", "PL2303", "RS-232", "Bill of materials"):
        assert topic.lower() in readme.lower()
