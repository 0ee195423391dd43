"""keepalived.conf text -> a tree of statements, as keepalived reads it.

What keepalived does (keepalived.conf(5), "DESCRIPTION", "Quoted strings",
"Conditional configuration") and lvs_app does too:

* A statement is the words of one line.  ``{`` and ``}`` are words of their
  own wherever they stand outside quotes and they end the statement before
  them, so ``real_server 10.0.0.11 80 { weight 3 }`` is two statements and a
  block, and ``}`` may be followed by another statement on the same line.  A
  ``{`` alone on a line opens the block of the statement on the line before.
  ``;`` is not a separator: keepalived reads ``rr;`` as a word.
* ``#`` and ``!`` start a comment anywhere outside quotes.
* ``"..."`` and ``'...'`` quote, and join the text next to them into one word,
  as in the shell; inside quotes ``\\n``, ``\\t``, ``\\xXX``, ``\\nnn``,
  ``\\cC`` ... are escapes and ``\\C`` is ``C``.
* ``@ID line`` is read only when ``ID`` is the config id, ``@^ID line`` only
  when it is not (keepalived's ``-i``; its default is the host name up to
  the first dot, and so is lvs_app's).
* ``include FILE`` (and ``includer``, ``includem``, ``includew``,
  ``includeb``, ``includea``), the first word of a line, reads FILE there:
  a glob pattern with csh braces, relative to the directory of the file that
  includes it.

Where lvs_app differs:

* A missing or unreadable include file is an error, as under keepalived's
  ``include_check readable match`` (plain ``include`` in keepalived ignores
  it).  A wildcard or brace pattern that matches nothing is only a warning
  (an empty ``conf.d/*`` is normal) unless ``includew``/``includeb``/
  ``includea`` asks for a match.  An include loop is an error.
* Parameter substitution (``$NAME=value``) and sequence and list blocks
  (``~SEQ(...)``, ``~LST(...)``) are refused with a clear error rather than
  half-done; expand them (``keepalived -d`` shows the result) first.

Stdlib only.
"""

import glob
import os
import platform
import re
from dataclasses import dataclass

from lvs_app.errors import BadRequest

# include variant -> the extra checks it asks for (keepalived's include_check names)
INCLUDE_WORDS = {
    "include": (), "includer": (), "includem": (),
    "includew": ("wildcard_match",), "includeb": ("brace_match",),
    "includea": ("wildcard_match", "brace_match"),
}


class _Mark:
    """A brace or an end of line in the token stream (never equal to a word)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


OPEN, CLOSE, EOL = _Mark("{"), _Mark("}"), _Mark("end of line")
_ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "e": "\x1b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t", "v": "\v"}
_PARAMETER = re.compile(r"\s*\$[A-Za-z_][A-Za-z0-9_]*=")
_SEQUENCE = re.compile(r"\s*~(SEQx?|LST)\(")


class ConfigError(BadRequest):
    """A keepalived.conf that lvs_app refuses; the message starts ``FILE:LINE: ``."""

    def __init__(self, message, origin=None):
        super().__init__(f"{origin}: {message}" if origin else message)
        self.origin = origin
        self.reason = message


@dataclass(frozen=True)
class Origin:
    """Where a statement was written: file name (as given or as included) and line."""

    file: str
    line: int

    def __str__(self):
        return f"{self.file}:{self.line}"


@dataclass
class Statement:
    """One keyword and its arguments; ``block`` is the list inside ``{ }``, or None."""

    words: list
    origin: Origin
    block: list = None

    @property
    def keyword(self):
        return self.words[0]

    @property
    def args(self):
        return self.words[1:]

    def __str__(self):
        return " ".join(self.words)


def default_config_id():
    """keepalived's default ``-i``: the node name up to its first dot."""
    return platform.node().split(".")[0]


# --------------------------------------------------------------------------
# one line -> words and braces

def _escape(line, j):
    """The escape starting after the backslash at ``line[j-1]``: (text, next index)."""
    c = line[j]
    if c in _ESCAPES:
        return _ESCAPES[c], j + 1
    if c in "01234567":
        m = re.match(r"[0-7]{1,3}", line[j:])
        return chr(int(m.group(), 8)), j + len(m.group())
    if c == "x":
        m = re.match(r"[0-9A-Fa-f]{1,2}", line[j + 1:])
        if m:
            return chr(int(m.group(), 16)), j + 1 + len(m.group())
    if c == "c" and j + 1 < len(line):
        return chr(ord(line[j + 1]) & 0x1F), j + 2
    return c, j + 1


def split_line(line, origin, braces=True):
    """Words and braces of one line, comments dropped, quotes and escapes applied.

    ``braces=False`` reads ``{`` and ``}`` as text (an include's brace pattern).
    """
    tokens, word, i, n = [], None, 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace() or c in "#!" or (braces and c in "{}"):
            if word is not None:
                tokens.append(word)
                word = None
            if c in "#!":
                break
            if c in "{}":
                tokens.append(OPEN if c == "{" else CLOSE)
            i += 1
        elif c in "\"'":
            text, j = [], i + 1
            while True:
                if j >= n:
                    raise ConfigError(f"unterminated quoted string {line[i:].rstrip()}", origin)
                if line[j] == c:
                    break
                if line[j] == "\\" and j + 1 < n:
                    piece, j = _escape(line, j + 1)
                    text.append(piece)
                else:
                    text.append(line[j])
                    j += 1
            word = (word or "") + "".join(text)
            i = j + 1
        else:
            word = (word or "") + c
            i += 1
    if word is not None:
        tokens.append(word)
    return tokens


# --------------------------------------------------------------------------
# files -> tokens (includes and conditionals)

def _expand_braces(pattern):
    """csh brace expansion: ``a{b,c}d`` -> ``abd``, ``acd`` (nested allowed)."""
    depth, start = 0, None
    for i, c in enumerate(pattern):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                parts, level, last = [], 0, start + 1
                for k in range(start + 1, i):
                    if pattern[k] == "{":
                        level += 1
                    elif pattern[k] == "}":
                        level -= 1
                    elif pattern[k] == "," and level == 0:
                        parts.append(pattern[last:k])
                        last = k + 1
                parts.append(pattern[last:i])
                if len(parts) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1:]
                return [x for part in parts for x in _expand_braces(head + part + tail)]
    return [pattern]


class _FileReader:
    """Reads the main file and its includes into one token stream."""

    def __init__(self, config_id, warnings):
        self.config_id = default_config_id() if config_id is None else config_id
        self.warnings = warnings
        self.files = []          # every file read, in order
        self.stack = []          # real paths of the files being read (include loops)
        self.tokens = []         # (token, Origin)

    def read_file(self, path, origin=None):
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join(os.path.basename(p) for p in self.stack + [real])
            raise ConfigError(f"include loop: {chain}", origin)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}", origin) from None
        self.read_text(text, path, real)

    def read_text(self, text, name, real=None):
        self.files.append(name)
        self.stack.append(real or os.path.realpath(name))
        for lineno, line in enumerate(text.splitlines(), 1):
            self._line(line, Origin(name, lineno))
        self.stack.pop()

    def _line(self, line, origin):
        stripped = line.lstrip()
        if stripped.startswith("@"):
            m = re.match(r"@(\^?)(\S*)\s*(.*)", stripped)
            negate, ident, rest = m.group(1) == "^", m.group(2), m.group(3)
            if (ident == self.config_id) == negate:
                return
            line = rest
        if _PARAMETER.match(line):
            raise ConfigError("parameter substitution ($NAME=value) is not supported by "
                              "lvs_app's keepalived parser; expand the file first "
                              "(keepalived -d prints it expanded)", origin)
        if _SEQUENCE.match(line):
            raise ConfigError("~SEQ and ~LST blocks are not supported by lvs_app's "
                              "keepalived parser; expand the file first", origin)
        if line.split(None, 1)[:1] and line.split(None, 1)[0] in INCLUDE_WORDS:
            # keepalived sees an include before anything else: braces are the pattern's
            self._include(split_line(line, origin, braces=False), origin)
            return
        words = split_line(line, origin)
        for word in words:
            self.tokens.append((word, origin))
        self.tokens.append((EOL, origin))

    def _include(self, words, origin):
        if len(words) != 2:
            raise ConfigError(f"{words[0]} needs one file name (quote a name with spaces)",
                              origin)
        checks = INCLUDE_WORDS[words[0]]
        # relative to the including file's directory, named as that file is named
        here = os.path.dirname(origin.file)
        pattern = words[1]
        found, alternatives = [], _expand_braces(pattern)
        braced = len(alternatives) > 1
        for alternative in alternatives:
            full = os.path.join(here, alternative)
            wild = glob.has_magic(alternative)
            matches = sorted(glob.glob(full)) if wild else ([full] if os.path.exists(full) else [])
            if matches:
                found.extend(matches)
            elif not wild and not braced:
                raise ConfigError(f"{words[0]} {pattern}: no file {full}", origin)
            elif ("wildcard_match" if wild else "brace_match") in checks:
                raise ConfigError(f"{words[0]} {pattern}: nothing matches {full}", origin)
            else:
                self.warnings.append(f"{origin}: {words[0]} {pattern}: nothing matches {full}")
        if braced and not found and not glob.has_magic(pattern.replace("{", "").replace("}", "")):
            raise ConfigError(f"{words[0]} {pattern}: no file matches", origin)
        for path in found:
            if os.path.isdir(path):
                raise ConfigError(f"{words[0]} {pattern}: {path} is a directory", origin)
            self.read_file(path, origin)


# --------------------------------------------------------------------------
# tokens -> statements

def _build(tokens):
    root = []
    stack = [(root, None)]          # (statement list, statement that opened it)
    words, first, last = [], None, None

    def flush():
        nonlocal words, last
        stmt = Statement(words, first)
        stack[-1][0].append(stmt)
        words = []
        return stmt

    for token, origin in tokens:
        if token is EOL:
            if words:
                last = flush()
        elif token is OPEN:
            if words:
                owner = flush()
            elif last is not None and last.block is None:
                owner = last          # "{" alone on the line after its keyword
            else:
                raise ConfigError("'{' without a keyword before it", origin)
            owner.block = []
            stack.append((owner.block, owner))
            last = None
        elif token is CLOSE:
            if words:
                flush()
            if len(stack) == 1:
                raise ConfigError("unbalanced '}': no block is open here", origin)
            stack.pop()
            last = None
        else:
            if not words:
                first = origin
                last = None
            words.append(token)
    if words:
        flush()
    if len(stack) > 1:
        opener = stack[-1][1]
        raise ConfigError(f"missing '}}' for '{opener}' opened at {opener.origin}",
                          opener.origin)
    return root


def read(path=None, text=None, name="keepalived.conf", config_id=None, warnings=None):
    """The statement tree of a file (``path``) or of ``text`` named ``name``.

    Returns ``(statements, files)``; include warnings are appended to ``warnings``.
    """
    reader = _FileReader(config_id, warnings if warnings is not None else [])
    if path is not None:
        reader.read_file(path)
    else:
        reader.read_text(text, name, os.path.realpath(name))
    return _build(reader.tokens), reader.files
