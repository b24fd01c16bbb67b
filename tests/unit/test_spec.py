"""The configuration spec is the one declaration: loader, JSON Schema and README follow it."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from wampd import config
from wampd.cli import run_cli
from wampd.config import Config, json_schema, parse_config
from wampd.errors import ConfigError
from wampd.spec import keys, reference, setting

ROOT = Path(__file__).resolve().parents[2]
STALE = "out of date: run scripts/update-docs"


def readme_reference() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(
        r"Every key, with its default[^\n]*\n(?:[^\n]+\n)*\n```toml\n(.*?)```\n", text, re.DOTALL
    )
    assert found, "README.md has no 'Every key, with its default:' block"
    return found[1]


def test_the_readme_reference_is_the_specs() -> None:
    """README's "Full reference" block is what the spec generates, and loads as a config."""
    assert readme_reference() == reference(Config), STALE
    loaded = parse_config(tomllib.loads(readme_reference()), environ={})
    assert loaded.router.urls == ("ws://127.0.0.1:8080/ws",)
    assert loaded.reconnect == config.ReconnectConfig()  # the defaults it shows are real


def test_the_shipped_schema_is_the_specs(capsys: pytest.CaptureFixture[str]) -> None:
    """``wampd config-schema`` prints the spec's schema, and the package ships the same."""
    shipped = json.loads((ROOT / "wampd" / "wampd.schema.json").read_text())
    assert shipped == json_schema(), STALE
    assert run_cli(["config-schema"], {}) == 0
    assert json.loads(capsys.readouterr().out) == shipped


def test_the_schema_describes_every_key_the_loader_knows() -> None:
    """Each key the loader accepts is in the schema, with a description; unknown keys are
    refused there as they are by the loader."""
    root = json_schema()
    assert root["additionalProperties"] is False
    assert set(root["properties"]) == set(keys(Config))
    router = root["properties"]["router"]
    assert set(router["properties"]) == set(keys(config.RouterConfig))
    assert set(router["properties"]["auth"]["properties"]) == set(keys(config.AuthConfig))
    assert set(root["properties"]["component"]["items"]["properties"]) == set(
        keys(config.ComponentSpec)
    )
    # [[component]] may be left out when [bridge] listens: the loader checks that.
    assert root["required"] == ["router"]

    def described(node: dict[str, Any], path: str) -> None:
        for key, child in node.get("properties", {}).items():
            assert child.get("description"), f"{path}.{key} has no description"
            described(child, f"{path}.{key}")
            described(child.get("items", {}), f"{path}.{key}[]")

    described(root, "")
    reconnect = root["properties"]["reconnect"]["properties"]
    assert reconnect["initial_delay"] == {
        "type": "number",
        "minimum": 0.0,
        "description": (
            "seconds: the ceiling of the first retries of an outage (see steady_retries)"
        ),
        "default": 3.0,
    }
    assert reconnect["max_retries"]["default"] == -1


def test_a_field_added_to_the_spec_shows_up_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """One throwaway field declared on [reconnect], and nothing else edited: the loader
    reads and checks it (with the usual wording), the schema and the reference list it."""
    extended = dataclasses.make_dataclass(
        "ReconnectConfig",
        [("throwaway", float, config._number(3.0, "a throwaway setting for this test"))],
        bases=(config.ReconnectConfig,),
        frozen=True,
    )
    monkeypatch.setattr(config, "ReconnectConfig", extended)
    field = Config.__dataclass_fields__["reconnect"]
    declared = dataclasses.replace(field.metadata["wampd"], record=extended)
    monkeypatch.setattr(field, "metadata", MappingProxyType({"wampd": declared}))
    base = {
        "router": {"url": "ws://127.0.0.1:8080/ws", "realm": "realm1"},
        "component": [{"name": "c", "entry": "m:C"}],
    }

    loaded = parse_config({**base, "reconnect": {"throwaway": 7.5}}, environ={})
    assert loaded.reconnect.throwaway == 7.5  # type: ignore[attr-defined]
    assert parse_config(base, environ={}).reconnect.throwaway == 3.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "reconnect": {"throwaway": "x", "throwawy": 1}}, environ={})
    assert info.value.problems == (
        'reconnect.throwawy: unknown key (did you mean "throwaway"?)',
        'reconnect.throwaway: must be a number >= 0, got "x"',
    )
    schema = json_schema()["properties"]["reconnect"]["properties"]["throwaway"]
    assert schema["description"] == "a throwaway setting for this test"
    assert schema["default"] == 3.0
    assert re.search(r"^throwaway = 3\.0 +# a throwaway setting", reference(Config), re.M)


def test_settings_declare_their_defaults_once() -> None:
    """A record built without arguments has exactly the defaults the schema documents."""
    root = json_schema()["properties"]
    for name, record in (
        ("reconnect", config.ReconnectConfig),
        ("keepalive", config.KeepaliveConfig),
        ("http", config.HTTPConfig),
        ("log", config.LogConfig),
        ("shutdown", config.ShutdownConfig),
    ):
        defaults = {k: v["default"] for k, v in root[name]["properties"].items()}
        built = dataclasses.asdict(record())
        built = {
            k: (-1 if v is None else list(v) if isinstance(v, tuple) else v)
            for k, v in built.items()
        }
        assert built == defaults, name
    assert setting(1.0, doc="d").metadata["wampd"].doc == "d"


def _check_jsonschema(instance: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(tool), "--schemafile", str(ROOT / "wampd" / "wampd.schema.json"), str(instance)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_jsonschema_accepts_the_shipped_configs_and_rejects_a_typo(
    tmp_path: Path,
) -> None:
    """The shipped schema, as editors and CI use it (``check-jsonschema``): the example
    config and the Kubernetes ConfigMap's TOML pass, and a misspelt key is refused."""
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    from_configmap = tmp_path / "configmap.toml"
    from_configmap.write_text(configmap["data"]["wampd.toml"])
    for instance in (ROOT / "examples" / "wampd.toml", from_configmap):
        result = _check_jsonschema(instance)
        assert result.returncode == 0, (instance, result.stdout, result.stderr)

    typo = tmp_path / "typo.toml"
    typo.write_text(
        (ROOT / "examples" / "wampd.toml")
        .read_text()
        .replace("[reconnect]", "[reconnect]\nmax_retry = 3", 1)
    )
    assert "max_retry = 3" in typo.read_text()
    result = _check_jsonschema(typo)
    assert result.returncode == 1, result.stdout
    assert "max_retry" in result.stdout
