"""Token healing: a cursor inside a word, on the real 0.5B model's tokenizer and decoding."""

from __future__ import annotations

import dataclasses
import threading

from fim_pool import FIM

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.agents.completion.token_healing import MAX_HEAL_CHARS, Vocabulary, split_for_healing
from memlsp.config import Config
from memlsp.models import ModelPool


def test_tokens_that_finish_or_take_part_of_what_is_pending() -> None:
    vocabulary = Vocabulary([b"", b" b", b" bu", b" build", b" bui", b"ld", b"x", b" built", b"b"])
    assert sorted(vocabulary.allowed(b" bui").tolist()) == [1, 2, 3, 4, 7]
    assert sorted(vocabulary.allowed(b"ld_").tolist()) == [5]
    assert vocabulary.allowed(b"zz").tolist() == []
    assert vocabulary.piece(3) == b" build"


def test_the_prompt_ends_at_the_token_boundary_before_the_word(fim_model_pool: ModelPool) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        pieces = Vocabulary([llama.detokenize([t]) for t in range(llama.n_vocab())])

        def tokenize(text: str) -> list[int]:
            return list(llama.tokenize(text.encode(), add_bos=False, special=False))

        def split(prefix: str) -> tuple[str, bytes]:
            return split_for_healing(prefix, tokenize, pieces.piece)

        assert split("x = 1\nR = bui") == ("x = 1\nR =", b" bui")  # ` bu` `i`: the space too
        assert split("G = nx.dij") == ("G = nx", b".dij")  # `.d` `ij`: the dot too
        assert split("    return resu")[1].endswith(b"resu")
        # Not inside a word: as it was.
        assert split("R = ") == ("R = ", b"") and split("f(") == ("f(", b"")
        long_word = "x = " + "a" * (MAX_HEAL_CHARS + 1)
        assert split(long_word) == (long_word, b"")
        # A word with a character of several bytes: healed whole, the bytes are UTF-8.
        assert split("s = 'caf\u00e9") == ("s = '", "caf\u00e9".encode())

        def split_last(prefix: str) -> tuple[str, bytes]:
            return split_for_healing(prefix, tokenize, pieces.piece, last_token=True)

        # The cursor line after the middle token: a line ending in a space or an operator
        # loses its last token too, a word as before.
        assert split_last("x = 1\n    if ") == ("x = 1\n    if", b" ")
        assert split_last("x = 1\n    d +") == ("x = 1\n    d", b" +")
        assert split_last("x = 1\nR = bui") == ("x = 1\nR =", b" bui")
        assert split_last("(") == ("(", b"")  # one token: nothing before it to keep


def agent(pool: ModelPool, healing: bool) -> GeneratorAgent:
    config = Config().agents.generator
    config = dataclasses.replace(config, context_tokens=0, token_healing=healing)
    return GeneratorAgent(pool, config, FIM)


def ask(generator: GeneratorAgent, prefix: str) -> tuple[str, int, int]:
    request = InlineRequest("file:///t.py", "t.py", "python", prefix, "\n")
    suggestion = generator.complete(request, threading.Event())
    return suggestion.text, suggestion.prompt_tokens, suggestion.reused_tokens


def test_a_word_cut_by_the_cursor_is_finished_not_restarted(fim_model_pool: ModelPool) -> None:
    prefix = "def area(width, height):\n    resu"
    # Without healing the 0.5B starts a new token after `resu` and writes `resu = ...`.
    unhealed, _, _ = ask(agent(fim_model_pool, False), prefix)
    healed, _, _ = ask(agent(fim_model_pool, True), prefix)
    assert not unhealed.startswith("lt")
    assert healed.startswith("lt =") and "width" in healed


def test_each_key_in_one_word_reuses_the_whole_prompt(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool, True)
    ask(generator, "def area(width, height):\n    res")
    text, prompt, reused = ask(generator, "def area(width, height):\n    resul")
    assert text.startswith("t")
    assert prompt - reused <= 1  # the same prompt: only the last token for its logits
