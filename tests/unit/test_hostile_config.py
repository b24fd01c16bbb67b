"""Hostile configuration through the real CLI: always status 0 or 2, never a traceback."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.tomlgen import toml_string, toml_value
from wampd import config
from wampd.cli import run_cli
from wampd.spec import keys

# The keys the spec declares, so the fuzzer follows any key added to it.
SECTIONS = {
    "router": list(keys(config.RouterConfig)),
    "reconnect": list(keys(config.ReconnectConfig)),
    "keepalive": list(keys(config.KeepaliveConfig)),
    "http": list(keys(config.HTTPConfig)),
    "log": list(keys(config.LogConfig)),
    "shutdown": list(keys(config.ShutdownConfig)),
}
COMPONENT_KEYS = list(keys(config.ComponentSpec))
_SEGMENT = r'(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+)'
#: "wampd: config error: <key>: <text>", the key dotted, quoted TOML-style where needed.
PROBLEM = re.compile(rf"^wampd: config (error|warning): {_SEGMENT}(?:\.{_SEGMENT}|\[\d+\])*: .+")

scalars = (
    st.text(max_size=30)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.sampled_from(
        [
            "ws://127.0.0.1:8080/ws",
            "realm1",
            "full",
            "json",
            "tests.unit.sample_entries:Plain",
            "127.0.0.1:0",
            "",
        ]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def key_from(known: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(known) | st.text(min_size=1, max_size=12)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for section in draw(st.lists(key_from(list(SECTIONS)), max_size=5, unique=True)):
        known = SECTIONS.get(section, ["x"])
        doc[section] = draw(st.dictionaries(key_from(known), values, max_size=4))
    if draw(st.booleans()):
        doc["component"] = draw(
            st.lists(st.dictionaries(key_from(COMPONENT_KEYS), values, max_size=4), max_size=2)
        )
    return doc


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for section, table in doc.items():
        if section == "component":
            for component in table:
                lines.append("[[component]]")
                lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in component.items()]
        else:
            lines.append(f"[{toml_string(section)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wampd.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = run_cli(["check-config", "--config", str(path)], {})
    assert status in (0, 2), (status, err.getvalue())
    assert "Traceback" not in err.getvalue()
    lines = err.getvalue().rstrip("\n").split("\n") if err.getvalue() else []
    if status == 2:
        assert lines, "a refused configuration must say why"
    for line in lines:
        assert PROBLEM.match(line), line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_exit_0_or_2_with_named_problems(doc: dict[str, Any]) -> None:
    """Any document built from real and made-up keys: 0 or 2, one named line per problem."""
    check(to_toml(doc))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_exits_0_or_2(text: str) -> None:
    """Arbitrary text as a config file: 0 or 2, never a traceback."""
    check(text)
