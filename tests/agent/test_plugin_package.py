"""examples/plugin_package (agentkit-unit-converter) works as a real third-party distribution:
discovered through its `agentkit` entry point (installed without pip: a dist-info on sys.path),
its tool has the right schema, and it runs through PluginHost.execute_tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.plugin_host import PluginHost
from agentkit.plugin_manager import make_plugin_manager
from agentkit.testing import install_plugin_package
from agentkit.tools import ToolCall

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_package"






@pytest.fixture
def unit_converter(tmp_path, monkeypatch) -> PluginHost:
    """A fresh host that discovered the installed example through its entry point."""
    installed = install_plugin_package(EXAMPLE, tmp_path, monkeypatch)
    assert installed.entry_points == {"agentkit": {"unit_converter": "agentkit_unit_converter"}}
    monkeypatch.setenv("AGENTKIT_LOAD_PLUGINS", "unit_converter")
    return PluginHost(make_plugin_manager())


def test_entry_point_discovery_names_the_distribution(unit_converter):
    assert "unit_converter" in unit_converter.plugin_names()
    dists = {d.project_name: d.version for _, d in unit_converter.pm.list_plugin_distinfo()}
    assert dists == {"agentkit-unit-converter": "0.1.0"}
    assert unit_converter.tool_owner("convert_units") == "unit_converter"


def test_convert_units_schema(unit_converter):
    schema = unit_converter.all_tools()["convert_units"].schema()
    fn = schema["function"]
    assert fn["name"] == "convert_units"
    assert fn["description"] == "Convert a length or a temperature between units."
    params = fn["parameters"]
    assert params["required"] == ["value", "from_unit", "to_unit"]
    assert params["properties"]["value"]["type"] == "number"
    assert params["properties"]["from_unit"]["type"] == "string"
    assert params["properties"]["from_unit"]["enum"] == ["km", "mi", "m", "ft", "c", "f", "k"]
    assert fn["strict"] is True  # decoding keeps every call inside this schema
    assert "km, mi, m, ft" in params["properties"]["from_unit"]["description"]
    json.dumps(schema)  # what chat templates receive must be JSON


@pytest.mark.parametrize(("args", "expected"), [
    ({"value": 10, "from_unit": "km", "to_unit": "mi"}, "10 km = 6.21371 mi"),
    ({"value": 1, "from_unit": "mi", "to_unit": "ft"}, "1 mi = 5280 ft"),
    ({"value": 100, "from_unit": "C", "to_unit": "F"}, "100 c = 212 f"),
    ({"value": 0, "from_unit": "k", "to_unit": "c"}, "0 k = -273.15 c"),
    ({"value": "32", "from_unit": "fahrenheit", "to_unit": "celsius"}, "32 f = 0 c"),
])
def test_convert_units_runs_through_execute_tool(unit_converter, args, expected):
    result = unit_converter.execute_tool(ToolCall("convert_units", json.dumps(args)))
    assert result.status == "ok"
    assert result.content == expected


def test_convert_units_explains_bad_units(unit_converter):
    unknown = unit_converter.execute_tool(ToolCall("convert_units", '{"value": 1, "from_unit": "parsec", '
                                                                    '"to_unit": "km"}'))
    assert unknown.status == "ok"  # an answer the model can read and correct, not a crash
    assert unknown.content.startswith("error: unknown unit 'parsec'") and "known units: km, mi, m, ft, c, f, k" in unknown.content
    mixed = unit_converter.execute_tool(ToolCall("convert_units", '{"value": 1, "from_unit": "km", "to_unit": "c"}'))
    assert "cannot convert 'km' (a length) to 'c' (a temperature)" in mixed.content
    missing = unit_converter.execute_tool(ToolCall("convert_units", '{"value": 1}'))
    assert missing.status == "failed" and "TypeError" in missing.content


def test_not_loaded_without_the_allowlist(tmp_path, monkeypatch):
    install_plugin_package(EXAMPLE, tmp_path, monkeypatch)
    # tests/conftest.py sets AGENTKIT_LOAD_PLUGINS="": installed entry points stay unloaded
    assert "unit_converter" not in PluginHost(make_plugin_manager()).plugin_names()
    monkeypatch.setenv("AGENTKIT_LOAD_PLUGINS", "unit_converter")
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "unit_converter")
    assert PluginHost(make_plugin_manager()).tools() == {}
