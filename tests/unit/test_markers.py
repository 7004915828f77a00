"""The tier markers land where CI's fast tier (`tests/unit -m "not model"`) relies on them: a
test that loads a model is marked `model`, a pure one is not, and the folder markers follow the
folders. Collected in a child pytest so this run's own selection does not matter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# A pytest run in the child that collects these and prints {nodeid: [markers]}.
COLLECT = """
import json, sys
import pytest

class Marks:
    def pytest_collection_finish(self, session):
        self.found = {i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in session.items}

marks = Marks()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], [marks])
print("MARKS " + json.dumps(marks.found))
sys.exit(code)
"""

SAMPLES = {
    # through the shared model fixtures (conftest adds the marker)
    "unit/test_fences.py::test_a_fence_after_a_finished_function_is_not_the_suggestion": {"model"},
    "unit/test_indexer.py::test_gitignore_change_rescans": {"model"},
    # marked by hand: their own pool, a server asked for completions
    "unit/test_pool.py::test_lazy_load_and_sharing": {"model"},
    "lsp/test_server_memory.py::test_saved_file_is_reindexed": {"model"},
    "editors/test_nvim.py::test_ghost_text_appears_while_typing": {"editor", "model"},
    # no model (a parametrized test: every case)
    "unit/test_fences.py::test_what_opens_a_fence": set(),
    "unit/test_pool.py::test_unknown_model": set(),
    "stress/test_protocol_fuzz.py::test_text_sync_matches_the_reference_model_utf8": {"stress"},
    "editors/test_nvim.py::test_fake_request_follows_the_change": {"editor"},
}


def test_model_editor_and_stress_markers_sit_on_the_right_tests() -> None:
    files = sorted({str(TESTS / s.split("::")[0]) for s in SAMPLES})
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, *files], cwd=TESTS.parent, capture_output=True, text=True
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("MARKS ")), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-2000:]
    found: dict[str, list[str]] = json.loads(line.removeprefix("MARKS "))
    for sample, want in SAMPLES.items():
        ids = [i for i in found if i == f"tests/{sample}" or i.startswith(f"tests/{sample}[")]
        assert ids, f"{sample} was not collected: rename it here too"
        for nodeid in ids:
            tiers = set(found[nodeid]) & {"model", "editor", "stress"}
            assert tiers == want, (nodeid, found[nodeid])
