"""servopt.yaml_subset reads exactly what PyYAML reads, or declines (then PyYAML parses the text)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servopt.documents import _Loader, _scalar_loader, parse_yaml
from servopt.exceptions import ValidationError
from servopt.yaml_subset import UNSUPPORTED, read_subset

ROOT = Path(__file__).resolve().parents[1]


def canonical(value):
    """``value`` with every scalar's type kept (True != 1, 1.0 != 1 here), NaN equal to NaN."""
    if isinstance(value, dict):
        return ("dict", [(canonical(k), canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canonical(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))


def pyyaml(text: str):
    try:
        return ("ok", canonical(yaml.load(text, Loader=_Loader)))
    except Exception as exc:  # noqa: BLE001 - any refusal: the subset reader must decline too
        return ("error", type(exc).__name__)


def agree(text: str) -> bool:
    """True when the subset reader read ``text``; fails when it read something PyYAML reads differently."""
    fast = read_subset(text, _scalar_loader())
    if fast is UNSUPPORTED:
        return False
    assert pyyaml(text) == ("ok", canonical(fast)), text
    return True


READ = [
    "a: 1\nb: 2.5\nc: x\n",
    "a: 1e3\nb: 1E-6\nc: -5\nd: +7\ne: 0x1F\nf: 0o17\ng: 1_000\nh: .5\ni: -.inf\nj: .nan\n",
    "a: yes\nb: No\nc: on\nd: OFF\ne: true\nf: ~\ng: null\nh:\ni: 2024-01-02\nj: 2024-01-02 10:00:00\n",
    "a: 12:30\nb: 190:20:30\nc: 0b101\nd: 010\ne: 1.0e+3\n",
    "url: http://x.y/z?a=b\nname: a#b\nc: a[1]\nd: x, y\n",
    "3: one\n2.5: two\ntrue: t\nnull: n\n",
    "a:\n- 1\n- x\nb:\n  - {c: 1, d: [2, 3]}\n  -\n    e: f\n",
    "stages:\n- name: s\n  variants:\n  - name: v  # a comment\n    batches:\n      1: {latency_ms: 7.5}\n",
    "a: 'quoted, text'\nb: \"1\"\nc: ''\nd: []\ne: {}\n",
    "a:   spaced   \nb: [ 1 ,2 ]\n# trailing comment\n\n\n",
    "a:\n  b:\n    c:\n      - - 1\n",
    "-a: 1\n",
    "a: -\n",
    "a: 1\n  b: 2\n",
    "a: b: c\n",
    "a: [1, [2]]\n",
    "a: {b: {c: 1}}\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "a: |\n  text\n",
    "a: >\n  text\n",
    "a: multi\n  line\n",
    "a: 1\na: 2\n",
    "a: {b: 1, b: 2}\n",
    "1: x\n1.0: y\n",
    "<<: {a: 1}\n",
    "---\na: 1\n",
    "a: 1\n---\nb: 2\n",
    "a:\tb\n",
    "a: 1\r\nb: 2\r\n",
    "a: caf\u00e9\n",
    "a: \"esc\\n\"\n",
    "a: 'it''s'\n",
    "a: [1, 2,]\n",
    "a: {b}\n",
    "a: [b: 1]\n",
    "? a\n: 1\n",
    "- 1\n- 2\n",
    "just a scalar\n",
    "",
    "# only a comment\n",
    "a: 1\n b: 2\n",
    "a:\n    - 1\n  - 2\n",
    "a: 1 #c\nb: 2# not a comment\n",
    "a: '#'\n",
    "a: 2001-13-45\n",
    "a: 1 2\n",
    "a: %x\n",
    "a: @x\n",
    "a: `x\n",
    "a: ?x\n",
    "a: :x\n",
    "a: {b: 1} x\n",
    "a: [1] x\n",
    "a: [1\n  , 2]\n",
    "key with space: 1\n",
    "a:\n- 1\n b: 2\n",
    "a:\n  - 1\n  b: 2\n",
]


@pytest.mark.parametrize("text", READ)
def test_read_or_declined_never_different(text):
    agree(text)


def test_the_plain_forms_are_read_by_the_subset_reader():
    for text in READ[:10]:
        assert agree(text), text


def test_every_yaml_file_in_the_repository_agrees():
    files = [p for d in ("examples", "tests", "data", "profiles", "docs") for p in (ROOT / d).rglob("*.yaml")]
    assert files
    read = sum(agree(p.read_text(encoding="utf-8")) for p in files)
    assert read >= 5  # the plain problem files take the fast path


def test_a_large_generated_pipeline_agrees():
    stages = [{"name": f"s{s}", "variants": [
        {"name": f"v{v}", "accuracy": 0.5 + v / 100, "cores": float(1 + v % 3),
         "batches": {b: {"latency_ms": round(10.0 * b ** 0.8 + v, 2)} for b in (1, 2, 4, 8)}}
        for v in range(6)]} for s in range(5)]
    doc = {"problem": "pipeline", "workload_rps": 20, "sla_ms": 1e3, "stages": stages}
    for flow in (False, None):
        assert agree(yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow))


def test_errors_still_come_from_pyyaml_with_their_line():
    with pytest.raises(ValidationError, match="line 2: key 'a' appears twice"):
        parse_yaml("a: 1\na: 2\n", "p.yaml")
    with pytest.raises(ValidationError, match="not valid YAML"):
        parse_yaml("a: b: c\n", "p.yaml")


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, width=32),
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8))
keys = st.one_of(st.integers(0, 64), st.text(st.sampled_from("abcxyz_019-."), min_size=1, max_size=6))
documents = st.dictionaries(keys, st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12),
    min_size=1, max_size=6)


@settings(max_examples=300)
@given(doc=documents, flow=st.sampled_from([False, None]), indent=st.sampled_from([2, 4]))
def test_dumped_documents_agree(doc, flow, indent):
    agree(yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow, indent=indent))


@settings(max_examples=300)
@given(doc=documents, cut=st.integers(0, 10**6), junk=st.sampled_from(list(" -:#{}[],'\"&*!|>?\n\t~.0x")))
def test_damaged_documents_agree(doc, cut, junk):
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    at = cut % (len(text) + 1)
    agree(text[:at] + junk + text[at:])



TOKENS = ["1", "x", "1e3", "yes", "~", "-5", "a b", "0x1F", "2024-01-01", ".nan", "a#b", "'q'", "http://x", "1_0",
          "12:30", "+.5", "Null", "-a", "0o7", "'#'", "a[1]", "3.", "false"]
KEYS = ["a", "b", "1", "2.5", "true", "k_1", "x.y", "n-m", "0x10", "~"]
tree = st.recursive(st.sampled_from(TOKENS), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=10)


def emit(value, indent: int, draw) -> list[str]:
    """Block YAML for ``value`` at ``indent``, with randomly chosen indentation, flow style and comments."""
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v and not draw(st.booleans()):
                step = 0 if isinstance(v, list) and draw(st.booleans()) else draw(st.sampled_from([1, 2, 4]))
                lines.append(" " * indent + f"{k}:" + draw(st.sampled_from(["", "  # c"])))
                lines += emit(v, indent + step, draw)
            else:
                lines.append(" " * indent + f"{k}: {flow(v)}")
        return lines
    lines = []
    for v in value:
        if isinstance(v, dict) and v and draw(st.booleans()):
            inner = emit(v, indent + 2, draw)
            lines.append(" " * indent + "- " + inner[0].lstrip(" "))
            lines += inner[1:]
        else:
            lines.append(" " * indent + f"- {flow(v)}")
    return lines


def flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return value


@settings(max_examples=500)
@given(doc=st.dictionaries(st.sampled_from(KEYS), tree, min_size=1, max_size=4), data=st.data())
def test_generated_block_yaml_agrees(doc, data):
    agree("\n".join(emit(doc, 0, data.draw)) + "\n")


@settings(max_examples=300)
@given(doc=st.dictionaries(st.sampled_from(KEYS), tree, min_size=1, max_size=4), data=st.data(),
       line=st.integers(0, 100), shift=st.sampled_from([-2, -1, 1, 2]))
def test_generated_block_yaml_with_one_line_reindented_agrees(doc, data, line, shift):
    lines = emit(doc, 0, data.draw)
    i = line % len(lines)
    indent = len(lines[i]) - len(lines[i].lstrip(" "))
    lines[i] = " " * max(0, indent + shift) + lines[i].lstrip(" ")
    agree("\n".join(lines) + "\n")
