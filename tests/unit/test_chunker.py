"""Syntax-aware chunking: symbols, exact line ranges, windows, fallbacks, identifiers."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from memlsp.base.languages import language_for
from memlsp.memory import chunker
from memlsp.memory.chunker import (
    MAX_CHARS,
    MAX_LINES,
    MODULE_SYMBOL,
    TEXT_SYMBOL,
    chunk_file,
    identifiers,
)
from memlsp.memory.records import ChunkRecord, hash_text

Summary = list[tuple[str, int, int]]


def summary(chunks: list[ChunkRecord]) -> Summary:
    return [(c.symbol, c.start_line, c.end_line) for c in chunks]


def by_symbol(chunks: list[ChunkRecord], symbol: str) -> ChunkRecord:
    (found,) = [c for c in chunks if c.symbol == symbol]
    return found


# --- one fixture per language: a function, a class with methods, module-level code ----------

PYTHON = '''"""Shapes."""
import math

SCALE = 2


# Area of a circle.
def area(r: float) -> float:
    """Circle area."""
    return math.pi * r * r


class Shape:
    """A shape."""

    sides: int = 0

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def label(self) -> str:
        return self.name.upper()


print(area(SCALE))
'''

JAVASCRIPT = """import { pi } from "./math.js";

const SCALE = 2;

/** Area of a circle. */
function area(r) {
  return pi * r * r;
}

export class Shape {
  sides = 0;

  constructor(name) {
    this.name = name;
  }

  label() {
    return this.name.toUpperCase();
  }
}

export const double = (x) => {
  return x * SCALE;
};
"""

TYPESCRIPT = """import { pi } from "./math";

export interface Named {
  name: string;
}

// Area of a circle.
export function area(r: number): number {
  return pi * r * r;
}

export class Shape implements Named {
  sides = 0;

  constructor(public name: string) {}

  label(): string {
    return this.name.toUpperCase();
  }
}

export const SCALE = 2;
"""

TSX = """import React from "react";

type Props = {
  name: string;
};

export function Hello({ name }: Props) {
  return <div>Hello {name}</div>;
}

export class Counter extends React.Component<Props> {
  state = { n: 0 };

  render() {
    return <span>{this.state.n}</span>;
  }
}
"""

GO = """package shapes

import "math"

// Shape is a named shape.
type Shape struct {
\tName string
}

// Area of a circle.
func Area(r float64) float64 {
\treturn math.Pi * r * r
}

func (s *Shape) Label() string {
\treturn s.Name
}

const Scale = 2
"""

RUST = """use std::f64::consts::PI;

/// A named shape.
#[derive(Debug)]
pub struct Shape {
    name: String,
}

impl Shape {
    pub fn new(name: &str) -> Self {
        Shape { name: name.to_string() }
    }

    pub fn label(&self) -> String {
        self.name.to_uppercase()
    }
}

/// Area of a circle.
pub fn area(r: f64) -> f64 {
    PI * r * r
}

const SCALE: f64 = 2.0;
"""

JAVA = """package shapes;

import java.util.Locale;

/** A named shape. */
public class Shape {
    private final String name;

    public Shape(String name) {
        this.name = name;
    }

    /** Upper-case name. */
    public String label() {
        return name.toUpperCase(Locale.ROOT);
    }

    public static double area(double r) {
        return Math.PI * r * r;
    }
}
"""

C = """#include <math.h>

#define SCALE 2

/* A named shape. */
struct shape {
    const char *name;
    int sides;
};

/* Area of a circle. */
static double area(double r)
{
    return M_PI * r * r;
}

int sides(const struct shape *s) {
    return s->sides;
}
"""

CPP = """#include <string>

namespace geo {

// A named shape.
class Shape {
 public:
  explicit Shape(std::string name) : name_(std::move(name)) {}
  std::string label() const {
    return name_;
  }
  double area() const;

 private:
  std::string name_;
};

double Shape::area() const {
  return 0.0;
}

}  // namespace geo
"""

EXPECTED: dict[str, tuple[str, str, Summary]] = {
    "python": (
        "shapes.py",
        PYTHON,
        [
            (MODULE_SYMBOL, 0, 25),
            ("area", 6, 9),
            ("Shape", 12, 22),
            ("Shape.__init__", 17, 18),
            ("Shape.label", 20, 22),
        ],
    ),
    "javascript": (
        "shapes.js",
        JAVASCRIPT,
        [
            (MODULE_SYMBOL, 0, 2),
            ("area", 4, 7),
            ("Shape", 9, 19),
            ("Shape.constructor", 12, 14),
            ("Shape.label", 16, 18),
            ("double", 21, 23),
        ],
    ),
    "typescript": (
        "shapes.ts",
        TYPESCRIPT,
        [
            (MODULE_SYMBOL, 0, 21),
            ("Named", 2, 4),
            ("area", 6, 9),
            ("Shape", 11, 19),
            ("Shape.constructor", 14, 14),
            ("Shape.label", 16, 18),
        ],
    ),
    "tsx": (
        "hello.tsx",
        TSX,
        [
            (MODULE_SYMBOL, 0, 0),
            ("Props", 2, 4),
            ("Hello", 6, 8),
            ("Counter", 10, 16),
            ("Counter.render", 13, 15),
        ],
    ),
    "go": (
        "shapes.go",
        GO,
        [
            (MODULE_SYMBOL, 0, 18),
            ("Shape", 4, 7),
            ("Area", 9, 12),
            ("Shape.Label", 14, 16),
        ],
    ),
    "rust": (
        "src/shapes.rs",
        RUST,
        [
            (MODULE_SYMBOL, 0, 23),
            ("Shape", 2, 6),
            ("impl Shape", 8, 16),
            ("Shape.new", 9, 11),
            ("Shape.label", 13, 15),
            ("area", 18, 21),
        ],
    ),
    "java": (
        "src/Shape.java",
        JAVA,
        [
            (MODULE_SYMBOL, 0, 2),
            ("Shape", 4, 20),
            ("Shape.Shape", 8, 10),
            ("Shape.label", 12, 15),
            ("Shape.area", 17, 19),
        ],
    ),
    "c": (
        "shape.c",
        C,
        [
            (MODULE_SYMBOL, 0, 2),
            ("shape", 4, 8),
            ("area", 10, 14),
            ("sides", 16, 18),
        ],
    ),
    "cpp": (
        "shape.cpp",
        CPP,
        [
            (MODULE_SYMBOL, 0, 21),
            ("geo.Shape", 4, 15),
            ("geo.Shape.Shape", 7, 7),
            ("geo.Shape.label", 8, 10),
            ("geo.Shape.area", 17, 19),
        ],
    ),
}


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_definitions_get_exact_symbols_and_ranges(language: str) -> None:
    path, text, expected = EXPECTED[language]
    chunks = chunk_file(path, text)
    assert summary(chunks) == expected
    assert {c.language for c in chunks} == {language}
    assert {c.path for c in chunks} == {path}


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_every_non_blank_line_is_in_some_chunk(language: str) -> None:
    path, text, _ = EXPECTED[language]
    chunks = chunk_file(path, text)
    indexed = "\n".join(c.text for c in chunks)
    for line in text.splitlines():
        if line.strip():
            assert line.strip() in indexed, line


def test_python_chunks_hold_comments_docstrings_and_an_outline() -> None:
    chunks = chunk_file("shapes.py", PYTHON)
    assert by_symbol(chunks, "area").text == (
        "# Area of a circle.\n"
        "def area(r: float) -> float:\n"
        '    """Circle area."""\n'
        "    return math.pi * r * r"
    )
    # The class chunk: header, docstring, fields and one line per method, no method bodies.
    assert by_symbol(chunks, "Shape").text == (
        "class Shape:\n"
        '    """A shape."""\n'
        "\n"
        "    sides: int = 0\n"
        "\n"
        "    def __init__(self, name: str) -> None: ...\n"
        "\n"
        "    def label(self) -> str: ..."
    )
    assert by_symbol(chunks, "Shape.label").text.startswith("    @property\n    def label")
    assert by_symbol(chunks, MODULE_SYMBOL).text == (
        '"""Shapes."""\nimport math\n\nSCALE = 2\n\nprint(area(SCALE))'
    )


def test_leading_doc_comments_and_attributes_belong_to_the_definition() -> None:
    rust = by_symbol(chunk_file("shapes.rs", RUST), "Shape")
    assert rust.text.splitlines()[:3] == [
        "/// A named shape.",
        "#[derive(Debug)]",
        "pub struct Shape {",
    ]
    java = by_symbol(chunk_file("Shape.java", JAVA), "Shape.label")
    assert java.text.splitlines()[0] == "    /** Upper-case name. */"
    go = by_symbol(chunk_file("shapes.go", GO), "Shape")
    assert go.text.splitlines()[0] == "// Shape is a named shape."


def test_java_class_outline_keeps_fields_and_signatures() -> None:
    outline = by_symbol(chunk_file("Shape.java", JAVA), "Shape").text
    assert "    private final String name;" in outline
    assert "    public String label() { ..." in outline
    assert "toUpperCase" not in outline


def test_nested_classes_and_decorated_methods_in_python() -> None:
    text = (
        "class Outer:\n"
        "    class Inner:\n"
        "        @staticmethod\n"
        "        def make():\n"
        "            return 1\n"
    )
    assert summary(chunk_file("n.py", text)) == [
        ("Outer", 0, 4),
        ("Outer.Inner", 1, 4),
        ("Outer.Inner.make", 2, 4),
    ]


def test_scopes_and_wrappers_qualify_symbols() -> None:
    rust = "mod inner {\n    pub fn helper() {\n        1;\n    }\n}\n"
    assert ("inner.helper", 1, 3) in summary(chunk_file("lib.rs", rust))
    ts = "namespace NS {\n  export function inner() {\n    return 1;\n  }\n}\n"
    assert ("NS.inner", 1, 3) in summary(chunk_file("ns.ts", ts))
    cpp = "template <typename T>\nT biggest(T a, T b) {\n  return a > b ? a : b;\n}\n"
    assert summary(chunk_file("t.cpp", cpp)) == [("biggest", 0, 3)]
    rust_trait = "impl fmt::Display for Point {\n    fn fmt(&self) -> u8 {\n        1\n    }\n}\n"
    assert summary(chunk_file("p.rs", rust_trait)) == [
        ("impl fmt::Display for Point", 0, 4),
        ("Point.fmt", 1, 3),
    ]
    c_header = "#ifndef A_H\n#define A_H\nint twice(int x) {\n  return 2 * x;\n}\n#endif\n"
    assert summary(chunk_file("a.c", c_header)) == [(MODULE_SYMBOL, 0, 5), ("twice", 2, 4)]
    default = "export default function () {\n  return 1;\n}\n"
    assert summary(chunk_file("d.js", default)) == [("default", 0, 2)]


def test_one_line_types_stay_in_the_module_chunk() -> None:
    go = "package p\n\ntype ID string\n\nfunc F() {\n}\n"
    assert summary(chunk_file("p.go", go)) == [(MODULE_SYMBOL, 0, 2), ("F", 4, 5)]
    assert by_symbol(chunk_file("p.go", go), MODULE_SYMBOL).text == "package p\n\ntype ID string"


# --- long definitions: overlapping windows with the signature as header ---------------------

BODY_LINES = 70
# language -> (file name, opening lines, body line, closing lines, symbol, expected windows)
LONG: dict[str, tuple[str, list[str], str, list[str], str, Summary]] = {
    "python": (
        "l.py",
        ["import os", "", "def long_fn(n):"],
        "    n += {i}",
        [],
        "long_fn",
        [("long_fn", 2, 61), ("long_fn", 57, 72)],
    ),
    "javascript": (
        "l.js",
        ["import os from 'os';", "", "function longFn(n) {"],
        "  n += {i};",
        ["}"],
        "longFn",
        [("longFn", 2, 61), ("longFn", 57, 73)],
    ),
    "typescript": (
        "l.ts",
        ["import os from 'os';", "", "function longFn(n: number): number {"],
        "  n += {i};",
        ["}"],
        "longFn",
        [("longFn", 2, 61), ("longFn", 57, 73)],
    ),
    "tsx": (
        "l.tsx",
        ["import os from 'os';", "", "function longFn(n: number): number {"],
        "  n += {i};",
        ["}"],
        "longFn",
        [("longFn", 2, 61), ("longFn", 57, 73)],
    ),
    "go": (
        "l.go",
        ["package p", "", "func LongFn(n int) int {"],
        "\tn += {i}",
        ["}"],
        "LongFn",
        [("LongFn", 2, 61), ("LongFn", 57, 73)],
    ),
    "rust": (
        "l.rs",
        ["use std::fmt;", "", "fn long_fn(mut n: i32) -> i32 {"],
        "    n += {i};",
        ["}"],
        "long_fn",
        [("long_fn", 2, 61), ("long_fn", 57, 73)],
    ),
    "java": (
        "L.java",
        ["package p;", "class L {", "    int longFn(int n) {"],
        "        n += {i};",
        ["    }", "}"],
        "L.longFn",
        [("L.longFn", 2, 61), ("L.longFn", 57, 73)],
    ),
    "c": (
        "l.c",
        ["#include <stdio.h>", "", "int long_fn(int n) {"],
        "  n += {i};",
        ["}"],
        "long_fn",
        [("long_fn", 2, 61), ("long_fn", 57, 73)],
    ),
    "cpp": (
        "l.cpp",
        ["#include <cstdio>", "", "int long_fn(int n) {"],
        "  n += {i};",
        ["}"],
        "long_fn",
        [("long_fn", 2, 61), ("long_fn", 57, 73)],
    ),
}


@pytest.mark.parametrize("language", sorted(LONG))
def test_long_function_is_split_into_overlapping_windows(language: str) -> None:
    path, opening, body_line, closing, symbol, expected = LONG[language]
    lines = [*opening, *(body_line.format(i=i) for i in range(BODY_LINES)), *closing]
    chunks = [c for c in chunk_file(path, "\n".join(lines) + "\n") if c.symbol == symbol]
    assert summary(chunks) == expected
    first, second = chunks
    # Five lines of overlap, and the second window opens with the signature line.
    assert first.text.splitlines()[-5:] == second.text.splitlines()[1:6]
    assert second.text.splitlines()[0] == opening[-1]
    assert second.text.splitlines()[1] == lines[second.start_line]
    for chunk in chunks:
        assert chunk.text.count("\n") + 1 <= MAX_LINES
        assert len(chunk.text) <= MAX_CHARS


def test_multi_line_signature_is_the_whole_header() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    text = f"def f(a,\n      b):\n{body}\n"
    windows = chunk_file("f.py", text)
    assert summary(windows) == [("f", 0, 59), ("f", 55, 81)]
    assert windows[1].text.splitlines()[:3] == ["def f(a,", "      b):", "    x53 = 53"]


def test_windows_by_characters_for_long_lines() -> None:
    body = "\n".join(f"    value_{i} = '{'x' * 180}'" for i in range(30))
    chunks = chunk_file("wide.py", f"def wide():\n{body}\n")
    assert len(chunks) > 2
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    assert chunks[-1].end_line == 30


def test_huge_lines_are_shortened_so_each_chunk_has_its_own_first_line() -> None:
    assert summary(chunk_file("data.txt", "y" * 5000)) == [(TEXT_SYMBOL, 0, 0)]
    assert chunk_file("data.txt", "y" * 5000)[0].text == "y" * (MAX_CHARS // 2)
    signature = "def f(" + ", ".join(f"a{i}" for i in range(300)) + "):"
    lines = [signature, *(f"    x = '{'z' * 3000}'" for _ in range(5))]
    chunks = chunk_file("h.py", "\n".join(lines))
    assert summary(chunks) == [("f", row, row) for row in range(6)]
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    # Later windows open with the signature, cut short.
    assert chunks[1].text.split("\n")[0] == signature[:240]


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_no_two_chunks_share_symbol_and_first_line(language: str) -> None:
    path, text, _ = EXPECTED[language]
    chunks = chunk_file(path, text + "\n" + text)
    keys = [(c.symbol, c.start_line) for c in chunks]
    assert len(keys) == len(set(keys))
    same_line = chunk_file("o.cpp", "int f() { return 1; } int f(int x) { return x; }\n")
    assert summary(same_line) == [("f", 0, 0)]


# --- plain text, fallbacks, odd input -------------------------------------------------------


def test_text_files_get_line_windows_that_prefer_blank_lines() -> None:
    lines = [f"line {i}" for i in range(100)]
    lines[50] = ""
    chunks = chunk_file("notes.md", "\n".join(lines))
    assert summary(chunks) == [(TEXT_SYMBOL, 0, 49), (TEXT_SYMBOL, 45, 99)]
    assert {c.language for c in chunks} == {"markdown"}
    plain = chunk_file("a.unknown", "\n".join(f"l{i}" for i in range(150)))
    assert summary(plain) == [(TEXT_SYMBOL, 0, 59), (TEXT_SYMBOL, 55, 114), (TEXT_SYMBOL, 110, 149)]
    assert {c.language for c in plain} == {"text"}


@pytest.mark.parametrize(
    "path",
    ["b.py", "b.js", "b.ts", "b.tsx", "b.go", "b.rs", "b.java", "b.c", "b.cpp", "b.h"],
)
def test_bad_syntax_never_raises_and_keeps_the_text(path: str) -> None:
    text = 'def (:\n  }}}{{ class <<< fn func\n\x00 ;;; /* unterminated\n"open string\nend\n'
    chunks = chunk_file(path, text)
    assert chunks
    indexed = "\n".join(c.text for c in chunks)
    assert "unterminated" in indexed
    assert "end" in indexed


def test_definitions_survive_a_syntax_error_elsewhere() -> None:
    text = "def ok():\n    return 1\n\n\nx = = 3\n\ndef fine():\n    return 2\n"
    symbols = [c.symbol for c in chunk_file("e.py", text)]
    assert "ok" in symbols
    assert "fine" in symbols


def test_parser_failure_falls_back_to_line_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> object:
        raise RuntimeError("grammar failed to load")

    monkeypatch.setattr(chunker, "parser_for", broken)
    chunks = chunk_file("a.py", "def f():\n    return 1\n")
    assert summary(chunks) == [(TEXT_SYMBOL, 0, 1)]
    assert chunks[0].language == "python"


def test_empty_and_blank_files_have_no_chunks() -> None:
    assert chunk_file("a.py", "") == []
    assert chunk_file("a.txt", "\n \n\t\n") == []


def test_crlf_line_endings_leave_no_carriage_returns() -> None:
    chunks = chunk_file("w.py", "import os\r\n\r\ndef f():\r\n    return 1\r\n")
    assert summary(chunks) == [(MODULE_SYMBOL, 0, 0), ("f", 2, 3)]
    assert all("\r" not in c.text for c in chunks)


def test_content_hash_depends_only_on_the_text() -> None:
    function = "def f():\n    return 1\n"
    here = by_symbol(chunk_file("a.py", function), "f")
    moved = by_symbol(chunk_file("pkg/b.py", "import os\n\n\n" + function), "f")
    assert (here.start_line, moved.start_line) == (0, 3)
    assert here.content_hash == moved.content_hash == hash_text(here.text)
    assert len(here.content_hash) == 32
    changed = by_symbol(chunk_file("a.py", function.replace("1", "2")), "f")
    assert changed.content_hash != here.content_hash


def test_language_for() -> None:
    assert language_for("src/app.py") == "python"
    assert language_for("web/App.TSX") == "tsx"
    assert language_for("lib/x.d.ts") == "typescript"
    assert language_for("a/b.mjs") == "javascript"
    assert language_for("cmd/main.go") == "go"
    assert language_for("src/lib.rs") == "rust"
    assert language_for("A.java") == "java"
    assert language_for("x.h") == "c"
    assert language_for("x.hpp") == "cpp"
    assert language_for("README.md") == "markdown"
    assert language_for("Dockerfile") == "dockerfile"
    assert language_for("windows\\path\\x.cc") == "cpp"
    assert language_for("data.bin") is None
    assert language_for("LICENSE") is None


def test_cpp_header_named_h_is_parsed_as_cpp() -> None:
    header = (
        "#pragma once\nclass Widget {\n public:\n  int size() const {\n    return 1;\n  }\n};\n"
    )
    chunks = chunk_file("widget.h", header)
    assert summary(chunks) == [(MODULE_SYMBOL, 0, 0), ("Widget", 1, 6), ("Widget.size", 3, 5)]
    assert {c.language for c in chunks} == {"cpp"}
    plain_c = chunk_file("util.h", "int twice(int x);\n")
    assert {c.language for c in plain_c} == {"c"}


def test_five_thousand_lines_chunk_fast() -> None:
    text = "import os\n" + "".join(
        f"class K{i}:\n    '''Doc.'''\n"
        + "".join(f"    def m{j}(self, x):\n        return x + {j}\n\n" for j in range(8))
        for i in range(200)
    )
    assert text.count("\n") > 5000
    chunk_file("warm.py", "x = 1\n")  # grammar loading is not what is measured
    best = min(_timed(lambda: chunk_file("big.py", text)) for _ in range(3))
    # About 40 ms on a developer machine; the bound leaves room for slow CI runners.
    assert best < 0.25
    assert len(chunk_file("big.py", text)) == 1 + 200 * 9


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# --- identifiers ----------------------------------------------------------------------------


def test_identifiers_split_snake_and_camel_case() -> None:
    assert identifiers("parseHTTPResponse(get_user_name)") == [
        "parsehttpresponse",
        "parse",
        "http",
        "response",
        "get_user_name",
        "get",
        "user",
        "name",
    ]


def test_identifiers_edge_cases() -> None:
    assert identifiers("__init__ _private utf8Decode") == [
        "__init__",
        "init",
        "_private",
        "private",
        "utf8decode",
        "utf8",
        "decode",
    ]
    # Single letters, bare numbers and keywords-as-words: short terms go, repeats stay.
    assert identifiers("x = 42; foo(foo)") == ["foo", "foo"]
    assert identifiers("HTTPServer2Error") == ["httpserver2error", "http", "server2", "error"]
    assert identifiers("café_au_lait") == ["café_au_lait", "café", "au", "lait"]
    assert identifiers("") == []
