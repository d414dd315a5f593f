"""Valve's KeyValues text format: Steam's ``appmanifest_*.acf`` and ``libraryfolders.vdf``.

A document is a sequence of ``"key" "value"`` pairs and ``"key" { ... }``
blocks; strings are quoted (with ``\\"``, ``\\\\``, ``\\n``, ``\\t`` escapes) or bare
words; ``//`` starts a comment; a ``[$CONDITION]`` after a pair is ignored.
Steam compares keys without case, so lookups here do too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nixmox.core.errors import NixmoxError

KeyValues = dict[str, "str | KeyValues"]

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}
_UNESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}

#: ``StateFlags`` bits Steam writes in an app manifest (its ``EAppState``). Bits up to
#: 65536 as the current client defines them; the higher ones as older clients wrote them.
STATE_BITS = {
    1: "uninstalled",
    2: "update required",
    4: "fully installed",
    8: "update queued",
    16: "update optional",
    32: "files missing",
    64: "shared only",
    128: "files corrupt",
    256: "update running",
    512: "update paused",
    1024: "update started",
    2048: "uninstalling",
    4096: "backup running",
    8192: "app running",
    16384: "component in use",
    32768: "moving folder",
    65536: "update hidden",
    131072: "validating",
    262144: "adding files",
    524288: "preallocating",
    1048576: "downloading",
    2097152: "staging",
    4194304: "committing",
    8388608: "update stopping",
}


class KeyValuesError(NixmoxError):
    """Text that is not Valve KeyValues."""


def _tokens(text: str) -> Iterator[tuple[str, bool]]:
    """(token, quoted) pairs; braces come as unquoted ``{`` / ``}``."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "{}":
            yield c, False
            i += 1
        elif c == '"':
            out: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise KeyValuesError("unterminated quoted string")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and text[i + 1] in _ESCAPES:
                    out.append(_ESCAPES[text[i + 1]])
                    i += 2
                    continue
                out.append(c)
                i += 1
            yield "".join(out), True
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in '{}"':
                i += 1
            yield text[start:i], False


def loads(text: str) -> KeyValues:
    """Parse a KeyValues document into nested dicts (the last of duplicate keys wins)."""
    stack: list[KeyValues] = [{}]
    key: str | None = None
    for token, quoted in _tokens(text):
        if not quoted and token == "{":
            if key is None:
                raise KeyValuesError("a block without a key")
            child: KeyValues = {}
            stack[-1][key] = child
            stack.append(child)
            key = None
        elif not quoted and token == "}":
            if key is not None or len(stack) == 1:
                raise KeyValuesError("unexpected }")
            stack.pop()
        elif not quoted and token.startswith("[") and token.endswith("]") and key is None:
            continue  # a platform condition after a pair
        elif key is None:
            key = token
        else:
            stack[-1][key] = token
            key = None
    if key is not None:
        raise KeyValuesError(f"key {key!r} has no value")
    if len(stack) != 1:
        raise KeyValuesError("missing }")
    return stack[0]


def dumps(data: KeyValues, indent: int = 0) -> str:
    """``data`` as KeyValues text, the way Steam writes it (tabs, everything quoted)."""
    pad = "\t" * indent
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"{pad}{_quote(key)}", f"{pad}{{", dumps(value, indent + 1) + f"{pad}}}"]
        else:
            lines.append(f"{pad}{_quote(key)}\t\t{_quote(value)}")
    return "".join(line + "\n" for line in lines)


def _quote(text: str) -> str:
    return '"' + "".join(_UNESCAPES.get(c, c) for c in text) + '"'


def get(data: KeyValues, key: str) -> str | KeyValues | None:
    """``data[key]`` compared without case, as Steam does."""
    if key in data:
        return data[key]
    folded = key.casefold()
    return next((v for k, v in data.items() if k.casefold() == folded), None)


def _block(data: KeyValues, key: str) -> KeyValues:
    found = get(data, key)
    return found if isinstance(found, dict) else {}


def _text(data: KeyValues, key: str) -> str:
    found = get(data, key)
    return found if isinstance(found, str) else ""


@dataclass(frozen=True)
class AppManifest:
    """What ``steamapps/appmanifest_<appid>.acf`` says about one installed app."""

    appid: int
    name: str
    state_flags: int
    installdir: str
    buildid: str

    @property
    def fully_installed(self) -> bool:
        """StateFlags exactly 4: installed, nothing pending or running."""
        return self.state_flags == 4

    def state(self) -> str:
        """The StateFlags bits in words (``fully installed``, ``update required, ...``)."""
        if self.state_flags == 0:
            return "not installed"
        words = [word for bit, word in STATE_BITS.items() if self.state_flags & bit]
        unknown = self.state_flags & ~sum(STATE_BITS)
        if unknown:
            words.append(f"flags {unknown}")
        return ", ".join(words)


def parse_manifest(text: str) -> AppManifest:
    """An ``appmanifest_*.acf`` file's ``AppState``."""
    state = _block(loads(text), "AppState")
    if not state:
        raise KeyValuesError("no AppState block")
    try:
        appid = int(_text(state, "appid"))
        flags = int(_text(state, "StateFlags") or "0")
    except ValueError:
        raise KeyValuesError("appid and StateFlags must be numbers") from None
    return AppManifest(
        appid=appid,
        name=_text(state, "name"),
        state_flags=flags,
        installdir=_text(state, "installdir"),
        buildid=_text(state, "buildid"),
    )


def library_of(libraryfolders: str, appid: int) -> str | None:
    """The Steam library folder (``path``) of ``libraryfolders.vdf`` listing ``appid``."""
    root = _block(loads(libraryfolders), "libraryfolders")
    for entry in root.values():
        if isinstance(entry, dict) and str(appid) in _block(entry, "apps"):
            return _text(entry, "path") or None
    return None
