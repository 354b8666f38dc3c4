"""Names as data in XML and YAML: class and file names never break the files they are written to.

Class names and file names can hold any character a user or a file system allows, including ones
that XML 1.0 cannot represent at all (control characters other than tab, newline and carriage
return, ``U+FFFE``, ``U+FFFF``, lone surrogates from undecodable file names). Escaping cannot help
there, so :func:`xml_safe` writes each such character as the visible text ``\\xNN`` /
``\\uNNNN``; XML-special characters (``<``, ``&``, quotes) are left as they are, for the XML writer
to escape. The same rewritten name is used wherever one tool must match two files (CVAT labels and
shapes, the Label Studio config and tasks), so they still agree.

YAML can hold every character in a double-quoted scalar with escapes; :func:`yaml_quote` writes
one, keeping printable characters as they are.
"""

from __future__ import annotations

import re

_XML_ILLEGAL = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Characters YAML allows unescaped in a double-quoted scalar (its "printable" set), minus the
# quote, the backslash and YAML 1.1's line breaks (U+0085, U+2028, U+2029), which a reader would
# fold. Everything else is written as an escape.
_YAML_PLAIN = re.compile(
    r"[\x20-\x21\x23-\x5b\x5d-\x7e\xa0-\u2027\u202a-\ud7ff"
    r"\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold written as ``\\xNN`` / ``\\uNNNN``.

    Examples:
        ``"cat\\x01"`` (with a real control character) becomes the 8 characters ``cat\\x01``;
        ``"a & <b>"`` is unchanged (the XML writer escapes it).
    """
    return _XML_ILLEGAL.sub(lambda m: _escape(m.group()), text)


def yaml_quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that every YAML 1.1 / 1.2 reader reads back as-is.

    Printable characters are kept; ``"``, ``\\``, control characters, the byte-order mark,
    ``U+FFFE`` / ``U+FFFF`` become escapes (``\\"``, ``\\\\``, ``\\x01``, ``\\ufffe``...). A lone
    surrogate (an undecodable byte of a file name) cannot be in YAML at all, not even escaped for
    libyaml: it is written as the visible text ``\\udc80``, as :func:`xml_safe` does.
    """
    out = []
    for char in text:
        if _YAML_PLAIN.match(char):
            out.append(char)
        elif char in '"\\':
            out.append("\\" + char)
        elif ord(char) > 0xFFFF:
            out.append(f"\\U{ord(char):08x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:  # libyaml rejects even an escaped lone surrogate
            out.append(f"\\\\u{ord(char):04x}")
        else:
            out.append(_escape(char))
    return '"' + "".join(out) + '"'


_YAML_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_YAML_SIMPLE = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}


def yaml_unquote(text: str) -> str:
    """Read back a one-line YAML double-quoted scalar (as :func:`yaml_quote` writes it).

    Raises:
        ValueError: ``text`` is not a double-quoted scalar or holds an unknown escape.
    """
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"not a double-quoted YAML scalar: {text[:40]!r}")

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) > 1:
            return chr(int(code[1:], 16))
        if code not in _YAML_SIMPLE:
            raise ValueError(f"unknown YAML escape \\{code}")
        return _YAML_SIMPLE[code]

    return _YAML_ESCAPE.sub(unescape, text[1:-1])
