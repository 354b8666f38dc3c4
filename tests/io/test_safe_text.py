"""Names as data: XML-safe and YAML-quoted names parse back with real XML / YAML readers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from readers import in_ultralytics, real_reader  # tests/readers.py

from samadapter.io.safe_text import xml_safe, yaml_quote, yaml_unquote
from samadapter.io.yolo import read_yolo_names, write_yolo_data_yaml

NAMES = [
    "cat\x01",
    "sofa\ufffe",
    'a "b" \\ c',
    "naïve 🐱",
    "x\ud800y",
    "\x85\ufeff\t\n\u2028",
    "sofa: big",
    "- [x]",
    "#c]",
    "\x7f\x9f",
    "& <b>",
    "yes",
    "null",
    "1",
]


def test_xml_safe_keeps_xml_parsable() -> None:
    for name in NAMES:
        text = ET.tostring(ET.Element("a", {"v": xml_safe(name)}), encoding="unicode")
        back = ET.fromstring(text).get("v")
        assert back == xml_safe(name)
    assert xml_safe("cat\x01") == "cat\\x01" and xml_safe("a\ufffe") == "a\\ufffe"
    assert xml_safe('a & <b> "q" naïve\t') == 'a & <b> "q" naïve\t'  # left to the writer


def test_yaml_quote_round_trips_through_real_yaml_readers(tmp_path: Path) -> None:
    yaml = real_reader("yaml")
    # A lone surrogate cannot be in a YAML stream: it reads back as visible text.
    expected = [n.replace("\ud800", "\\ud800") for n in NAMES]
    for name, want in zip(NAMES, expected, strict=True):
        quoted = yaml_quote(name)
        assert yaml.safe_load(f"k: {quoted}\n")["k"] == want
        assert yaml.load(f"k: {quoted}\n", Loader=yaml.CSafeLoader)["k"] == want  # libyaml
        assert yaml_unquote(quoted) == want
    path = write_yolo_data_yaml(tmp_path / "data.yaml", NAMES)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["names"] == dict(enumerate(expected))
    assert read_yolo_names(path) == expected
    names = in_ultralytics(
        """
        from ultralytics.utils import YAML
        print(json.dumps(YAML.load(ARGS["path"])["names"]))
        """,
        tmp_path,
        path=str(path),
    )
    assert names == {str(i): n for i, n in enumerate(expected)}


def test_yaml_unquote_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="quoted"):
        yaml_unquote("plain")
    with pytest.raises(ValueError, match="escape"):
        yaml_unquote('"\\q"')
