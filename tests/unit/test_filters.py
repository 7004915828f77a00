"""What gets indexed: gitignore, globs, secrets, binaries, size, generated/vendored code,
links out of the workspace; and masking of credentials."""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import pytest

from memlsp.memory.filters import (
    BINARY,
    EXCLUDED,
    GENERATED,
    GITIGNORED,
    NOT_A_FILE,
    OUTSIDE_WORKSPACE,
    SECRET,
    SYMLINK_OUTSIDE,
    TOO_LARGE,
    VENDORED,
    FileFilter,
    mask_secrets,
)


def write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def walked(file_filter: FileFilter) -> dict[str, str | None]:
    return {path.relative_to(file_filter.root).as_posix(): why for path, why in file_filter.walk()}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


# --- gitignore ------------------------------------------------------------------------------


def test_root_gitignore(ws: Path) -> None:
    write(ws, ".gitignore", "*.log\nbuild_out/\n/only_root.txt\n# comment\n")
    for rel in ("a.log", "sub/b.log", "build_out/x.py", "only_root.txt", "sub/only_root.txt"):
        write(ws, rel)
    f = FileFilter(ws)
    assert f.check(ws / "a.log") == GITIGNORED
    assert f.check(ws / "sub/b.log") == GITIGNORED
    assert f.check(ws / "build_out/x.py") == GITIGNORED
    assert f.check(ws / "only_root.txt") == GITIGNORED
    assert f.check(ws / "sub/only_root.txt") is None
    assert f.check(Path("a.log")) == GITIGNORED  # relative to the root


def test_nested_gitignore_is_relative_to_its_folder(ws: Path) -> None:
    write(ws, "sub/.gitignore", "*.tmp\n/local.txt\n")
    for rel in ("a.tmp", "sub/a.tmp", "sub/deep/b.tmp", "sub/local.txt", "sub/deep/local.txt"):
        write(ws, rel)
    f = FileFilter(ws)
    assert f.check(ws / "a.tmp") is None
    assert f.check(ws / "sub/a.tmp") == GITIGNORED
    assert f.check(ws / "sub/deep/b.tmp") == GITIGNORED
    assert f.check(ws / "sub/local.txt") == GITIGNORED
    assert f.check(ws / "sub/deep/local.txt") is None


def test_negation(ws: Path) -> None:
    write(ws, ".gitignore", "*.log\n!keep.log\n*.txt\nlogs/\n!logs/kept.txt\n")
    write(ws, "sub/.gitignore", "!important.txt\n")
    for rel in ("a.log", "keep.log", "note.txt", "sub/important.txt", "sub/other.txt"):
        write(ws, rel)
    write(ws, "logs/kept.txt")
    f = FileFilter(ws)
    assert f.check(ws / "a.log") == GITIGNORED
    assert f.check(ws / "keep.log") is None
    assert f.check(ws / "note.txt") == GITIGNORED
    # A deeper .gitignore overrides a shallower one.
    assert f.check(ws / "sub/important.txt") is None
    assert f.check(ws / "sub/other.txt") == GITIGNORED
    # As in git, a file cannot be re-included when its folder is ignored.
    assert f.check(ws / "logs/kept.txt") == GITIGNORED


def test_invalidate_picks_up_an_edited_gitignore(ws: Path) -> None:
    write(ws, "a.log")
    write(ws, "logs/b.txt")
    f = FileFilter(ws)
    assert (f.check(ws / "a.log"), f.check(ws / "logs/b.txt")) == (None, None)
    write(ws, ".gitignore", "*.log\nlogs/\n")
    f.invalidate()
    assert (f.check(ws / "a.log"), f.check(ws / "logs/b.txt")) == (GITIGNORED, GITIGNORED)


def test_git_info_exclude(ws: Path) -> None:
    write(ws, ".git/info/exclude", "private.md\n")
    write(ws, "private.md", "# mine\n")
    write(ws, "public.md", "# ours\n")
    f = FileFilter(ws)
    assert f.check(ws / "private.md") == GITIGNORED
    assert f.check(ws / "public.md") is None
    assert f.check(ws / ".git/info/exclude") == EXCLUDED


def test_walk_prunes_ignored_folders_and_reports_each_once(ws: Path) -> None:
    write(ws, ".gitignore", "out/\n*.log\n")
    write(ws, "out/a.py")
    write(ws, "out/deep/b.py")
    write(ws, "x.log")
    write(ws, "src/main.py")
    write(ws, "src/sub/.gitignore", "gen_*\n")
    write(ws, "src/sub/gen_a.py")
    write(ws, "src/sub/real.py")
    assert walked(FileFilter(ws)) == {
        ".gitignore": None,
        "out": GITIGNORED,
        "x.log": GITIGNORED,
        "src/main.py": None,
        "src/sub/.gitignore": None,
        "src/sub/gen_a.py": GITIGNORED,
        "src/sub/real.py": None,
    }


# --- include / exclude globs ----------------------------------------------------------------


def test_include_and_exclude_globs(ws: Path) -> None:
    for rel in ("app.py", "lib/util.py", "lib/util.js", "docs/guide.md", "tests/test_app.py"):
        write(ws, rel)
    f = FileFilter(ws, include=["*.py", "docs/*.md"], exclude=["tests/"])
    assert f.check(ws / "app.py") is None
    assert f.check(ws / "lib/util.py") is None
    assert f.check(ws / "lib/util.js") == EXCLUDED
    assert f.check(ws / "docs/guide.md") is None
    assert f.check(ws / "tests/test_app.py") == EXCLUDED
    assert walked(f) == {
        "app.py": None,
        "docs/guide.md": None,
        "lib/util.js": EXCLUDED,
        "lib/util.py": None,
        "tests": EXCLUDED,
    }


def test_exclude_wins_over_include(ws: Path) -> None:
    write(ws, "src/gen_models.py")
    write(ws, "src/models.py")
    f = FileFilter(ws, include=["src/**"], exclude=["gen_*.py"])
    assert f.check(ws / "src/gen_models.py") == EXCLUDED
    assert f.check(ws / "src/models.py") is None


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    [
        ".env",
        "config/.env.production",
        "certs/server.pem",
        "tls.key",
        ".ssh/id_rsa",
        ".ssh/id_rsa.pub",
        ".ssh/id_ed25519",
        "id_ecdsa",
        "store.p12",
        "store.pfx",
        ".npmrc",
        ".pypirc",
        ".netrc",
        "credentials.json",
        "credentials-prod.json",
        "android/release.keystore",
        "secrets.yaml",
        "deploy/secrets.json",
    ],
)
def test_secret_files_are_skipped(ws: Path, rel: str) -> None:
    write(ws, rel, "TOKEN=abc\n")
    assert FileFilter(ws).check(ws / rel) == SECRET


def test_private_key_content_is_a_secret_whatever_the_name(ws: Path) -> None:
    write(ws, "deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n")
    write(ws, "id_utils.py", "def make_id():\n    return 1\n")
    write(ws, "credentials.py", "def login():\n    pass\n")
    f = FileFilter(ws)
    assert f.check(ws / "deploy_key") == SECRET
    assert f.check(ws / "id_utils.py") is None
    assert f.check(ws / "credentials.py") is None


# --- binary and size ------------------------------------------------------------------------


def test_binary_files(ws: Path) -> None:
    write(ws, "nul.dat", b"abc\x00def")
    write(ws, "latin1.txt", "caf\xe9".encode("latin-1"))
    write(ws, "utf16.txt", "hello".encode("utf-16"))
    # A multi-byte character cut by the 8 KiB head is still valid UTF-8.
    write(ws, "cut.txt", ("a" * 8191 + "é" * 10).encode("utf-8"))
    write(ws, "bom.py", "\ufeffx = 1\n".encode())
    f = FileFilter(ws)
    assert f.check(ws / "nul.dat") == BINARY
    assert f.check(ws / "latin1.txt") == BINARY
    assert f.check(ws / "utf16.txt") == BINARY
    assert f.check(ws / "cut.txt") is None
    assert f.check(ws / "bom.py") is None


def test_too_large(ws: Path) -> None:
    write(ws, "exact.txt", "a" * 1000)
    write(ws, "over.txt", "a" * 1001)
    f = FileFilter(ws, max_file_bytes=1000)
    assert f.check(ws / "exact.txt") is None
    assert f.check(ws / "over.txt") == TOO_LARGE
    write(ws, "huge.py", "x = 1\n" * 100_000)
    assert FileFilter(ws).check(ws / "huge.py") == TOO_LARGE


# --- generated and vendored -----------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    [
        "static/app.min.js",
        "static/site.min.css",
        "static/app.js.map",
        "package-lock.json",
        "web/yarn.lock",
        "poetry.lock",
        "Cargo.lock",
        "Gemfile.lock",
        "pnpm-lock.yaml",
        "go.sum",
        "proto/user_pb2.py",
        "api/user.pb.go",
    ],
)
def test_generated_by_name(ws: Path, rel: str) -> None:
    write(ws, rel, "x\n")
    assert FileFilter(ws).check(ws / rel) == GENERATED


@pytest.mark.parametrize(
    ("rel", "head", "reason"),
    [
        ("api.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n", GENERATED),
        (
            "m.py",
            "# Generated by Django 4.2 on 2024-01-01\nfrom django.db import migrations\n",
            GENERATED,
        ),
        ("t.ts", "/* eslint-disable */\n// This file was automatically generated.\n", GENERATED),
        ("x.h", "/*\n * @generated by bindgen\n */\n", GENERATED),
        ("w.cs", "// <auto-generated>\n// </auto-generated>\n", GENERATED),
        ("late.py", "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n# DO NOT EDIT below\n", None),
        ("doc.py", '"""Parse reports generated by the billing tool."""\n', None),
        ("gen.py", "def generated_by(tool):\n    return tool\n", None),
    ],
)
def test_generated_by_header(ws: Path, rel: str, head: str, reason: str | None) -> None:
    write(ws, rel, head)
    assert FileFilter(ws).check(ws / rel) == reason


def test_minified_script_without_min_in_its_name(ws: Path) -> None:
    write(ws, "bundle.js", "var a=1;" * 2000)
    write(ws, "normal.js", "const a = 1;\n" * 2000)
    write(ws, "data.json", '{"k": "' + "v" * 5000 + '"}')
    f = FileFilter(ws)
    assert f.check(ws / "bundle.js") == GENERATED
    assert f.check(ws / "normal.js") is None
    assert f.check(ws / "data.json") is None


def test_vendored_and_tool_folders_are_pruned(ws: Path) -> None:
    for rel in (
        "node_modules/left-pad/index.js",
        "vendor/github.com/x/y.go",
        "third_party/zlib/zlib.c",
        ".venv/lib/site.py",
        "venv/lib/site.py",
        "myenv/lib/site.py",
        "__pycache__/m.cpython-311.pyc",
        ".mypy_cache/3.11/m.json",
        "dist/app.js",
        "build/out.o",
        "target/debug/app",
        "pkg.egg-info/PKG-INFO",
        ".git/HEAD",
        "src/app.py",
    ):
        write(ws, rel)
    write(ws, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    f = FileFilter(ws)
    assert walked(f) == {
        "node_modules": VENDORED,
        "vendor": VENDORED,
        "third_party": VENDORED,
        ".venv": VENDORED,
        "venv": VENDORED,
        "myenv": VENDORED,
        "__pycache__": GENERATED,
        ".mypy_cache": GENERATED,
        "dist": GENERATED,
        "build": GENERATED,
        "target": GENERATED,
        "pkg.egg-info": GENERATED,
        ".git": EXCLUDED,
        "src/app.py": None,
    }
    assert f.check(ws / "node_modules/left-pad/index.js") == VENDORED
    assert f.check(ws / "myenv/lib/site.py") == VENDORED
    assert f.check(ws / "src/sub/__pycache__/x.pyc") == GENERATED


def test_walk_never_enters_pruned_folders(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(ws, "node_modules/a/b.js")
    write(ws, "main.py")
    scanned: list[str] = []
    real_scandir = os.scandir

    def spy(path: str | os.PathLike[str]) -> object:
        scanned.append(Path(path).name)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    assert walked(FileFilter(ws)) == {"main.py": None, "node_modules": VENDORED}
    assert scanned == ["ws"]


# --- links and odd paths --------------------------------------------------------------------


def test_symlinks_out_of_the_workspace_are_never_read(
    tmp_path: Path, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = write(tmp_path, "outside/passwords.txt", "root:hunter2\n")
    (ws / "leak.txt").symlink_to(outside)
    (ws / "leakdir").symlink_to(outside.parent, target_is_directory=True)
    inner = write(ws, "real.py")
    (ws / "alias.py").symlink_to(inner)
    opened: list[Path] = []
    real_open = pathlib.Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(pathlib.Path, "open", spy)
    f = FileFilter(ws)
    assert f.check(ws / "leak.txt") == SYMLINK_OUTSIDE
    assert f.check(ws / "leakdir") == SYMLINK_OUTSIDE
    assert f.check(ws / "leakdir/passwords.txt") == SYMLINK_OUTSIDE
    assert f.check(ws / "alias.py") is None
    assert walked(f) == {
        "alias.py": None,
        "leak.txt": SYMLINK_OUTSIDE,
        "leakdir": SYMLINK_OUTSIDE,
        "real.py": None,
    }
    assert all(outside.parent not in p.resolve().parents for p in opened)


def test_paths_outside_the_workspace(tmp_path: Path, ws: Path) -> None:
    other = write(tmp_path, "other/x.py")
    f = FileFilter(ws)
    assert f.check(other) == OUTSIDE_WORKSPACE
    assert f.check(ws / ".." / "other" / "x.py") == OUTSIDE_WORKSPACE
    assert f.relative(ws / "a" / ".." / "b.py") == "b.py"


def test_root_reached_through_a_link(tmp_path: Path, ws: Path) -> None:
    write(ws, "a.py")
    link = tmp_path / "link"
    link.symlink_to(ws, target_is_directory=True)
    f = FileFilter(link)
    assert f.check(link / "a.py") is None
    assert f.check(ws / "a.py") is None
    assert walked(f) == {"a.py": None}


def test_not_a_file(ws: Path) -> None:
    write(ws, "pkg/a.py")
    os.mkfifo(ws / "pipe")
    f = FileFilter(ws)
    assert f.check(ws / "pkg") == NOT_A_FILE
    assert f.check(ws / "pipe") == NOT_A_FILE
    assert f.check(ws / "missing.py") == NOT_A_FILE
    assert f.check(ws) == NOT_A_FILE


# --- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ('password = "hunter22"', 'password = "***"'),
        ("db_password: str = 'correct horse'", "db_password: str = '***'"),
        ('API_KEY = "abc123def456"', 'API_KEY = "***"'),
        ('"apiKey": "abcdefgh",', '"apiKey": "***",'),
        ("client_secret: 'shhh-secret'", "client_secret: '***'"),
        ('GITHUB_TOKEN := "tok-123456"', 'GITHUB_TOKEN := "***"'),
        ("connect(passwd='p4ssw0rd!')", "connect(passwd='***')"),
        ('$aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG"', '$aws_secret_access_key = "***"'),
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = ***"),
        ("gh = ghp_" + "a" * 36, "gh = ***"),
        ("pat: github_pat_11ABCDEFG0123456789_abcdefghijkl", "pat: ***"),
        ("slack xoxb-123456789012-abcdefghijkl end", "slack *** end"),
        ("xoxp-1234567890-abcdef", "***"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w",
            "Authorization: Bearer ***",
        ),
    ],
)
def test_mask_secrets(line: str, masked: str) -> None:
    assert mask_secrets(line) == masked


@pytest.mark.parametrize(
    "line",
    [
        'password = "short"',  # under six characters
        'tokenizer = "bert-base-uncased"',  # the name does not end in a keyword
        'author = "Jane Doe"',
        'if password == "hunter22":',  # a comparison, not an assignment
        "password = os.environ['DB_PASSWORD']",  # not a literal
        "def get_token(self) -> str:",
        "AKIA is a prefix",
    ],
)
def test_mask_secrets_leaves_ordinary_code(line: str) -> None:
    assert mask_secrets(line) == line


def test_mask_private_key_block_keeps_line_count() -> None:
    text = (
        "KEY = '''\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAx\n"
        "abcdefghijklmnop==\n"
        "-----END RSA PRIVATE KEY-----\n"
        "'''\n"
        'password = "hunter22"\n'
    )
    masked = mask_secrets(text)
    assert masked == (
        "KEY = '''\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "***\n"
        "***\n"
        "-----END RSA PRIVATE KEY-----\n"
        "'''\n"
        'password = "***"\n'
    )
    assert masked.count("\n") == text.count("\n")


def test_mask_unterminated_private_key_to_the_end() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA\n"
    assert mask_secrets(text) == "-----BEGIN OPENSSH PRIVATE KEY-----\n***\n***\n"


def test_mask_secrets_keeps_line_count_and_clean_text() -> None:
    clean = "def add(a, b):\n    return a + b\n"
    assert mask_secrets(clean) == clean
    dirty = 'a = 1\ntoken = "abcdefgh"\n\nkey = AKIAIOSFODNN7EXAMPLE\n'
    assert mask_secrets(dirty).count("\n") == dirty.count("\n")
    assert mask_secrets(dirty).splitlines()[0] == "a = 1"
