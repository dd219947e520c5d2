import importlib

import edge.decisioning

MODULES = (
    "api",
    "attribution",
    "caps",
    "cli",
    "component",
    "config",
    "consent",
    "engine",
    "erasure",
    "experiments",
    "identity",
    "offers",
    "profile",
    "tables",
    "uplift",
)


def test_public_api_is_exported() -> None:
    for name in edge.decisioning.__all__:
        assert hasattr(edge.decisioning, name), name
    for module in MODULES:
        mod = importlib.import_module(f"edge.decisioning.{module}")
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.{name}"


def test_every_config_key_is_documented() -> None:
    from edge.config import section_keys

    for key, _type, _default, text in section_keys(edge.decisioning.CONFIG_SECTIONS):
        assert text.strip(), key
