"""The rules against real repositories (tests/fixtures/models/corpus.py): what ``--select auto`` keeps for
each serving loader, and what ``verify`` reports on the copy, all asserted per repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelpvc.core.models import ObjectInfo
from modelpvc.model.layout import check_directory
from modelpvc.model.select import choose, loader_from_args
from tests.fixtures.models.corpus import Repo, all_repos, nbytes
from tests.support.realmodels import listing, materialize

REPOS = {r.id: r for r in all_repos()}
CASES = [(rid, loader) for rid, r in REPOS.items() for loader in r.expect]


def test_the_corpus_holds_at_least_fifteen_real_repositories_of_the_kinds_that_matter():
    assert len(REPOS) >= 15
    layouts = {e.layout for r in REPOS.values() for e in r.expect.values()}
    assert {"hf-safetensors", "mistral-native", "pytorch-bin", "gguf", "peft-adapter"} <= layouts


@pytest.mark.parametrize("rid", [r for r, repo in REPOS.items() if repo.index and
                                 isinstance((repo.index.get("metadata") or {}).get("total_size"), int)
                                 and repo.weights and all(f.endswith(".safetensors") for f in repo.weights)
                                 and repo.index["metadata"]["total_size"] > 0])
def test_published_total_sizes_equal_the_bytes_of_the_tensors_we_list(rid):
    """The facts check themselves: shapes derived from each config.json add up to the published total."""
    repo = REPOS[rid]
    assert sum(nbytes(t) for ts in repo.weights.values() for t in ts) == repo.index["metadata"]["total_size"]


def _selected(repo: Repo, loader: str) -> tuple[list[ObjectInfo], dict[str, str]]:
    objs = listing(repo)
    sel = choose([o.rel for o in objs], loader)
    return objs, sel.skips


@pytest.mark.parametrize(("rid", "loader"), CASES)
def test_select_auto_keeps_what_the_loader_reads_and_skips_only_duplicates(rid, loader):
    repo = REPOS[rid]
    expect = repo.expect[loader]
    objs = listing(repo)
    sel = choose([o.rel for o in objs], loader)
    assert sel.layout == expect.layout
    assert set(sel.skips) == set(expect.skipped), sel.skips
    kept = [o for o in objs if o.rel not in sel.skips]
    assert any(o.rel.endswith((".safetensors", ".bin", ".gguf", ".pth")) for o in kept)  # never drops the weights
    # Every non-weight file is kept: configs, tokenizers, remote code, preprocessor configs, docs.
    for o in objs:
        if o.rel.endswith((".py", ".json", ".model", ".txt", ".md")) and not o.rel.startswith("original/") \
                and o.rel not in expect.skipped:
            assert o.rel not in sel.skips


@pytest.mark.parametrize(("rid", "loader"), CASES)
def test_verify_of_the_selected_copy_reports_exactly_the_known_findings(rid, loader, tmp_path: Path):
    repo = REPOS[rid]
    expect = repo.expect[loader]
    d = materialize(repo, tmp_path / "m")
    for rel in expect.skipped:
        (d / rel).unlink()
    report = check_directory(d)
    assert {f.code for f in report.errors} == set(expect.errors), [f.message for f in report.errors]
    assert {f.code for f in report.warnings} == set(expect.warnings), [f.message for f in report.warnings]
    if expect.layout not in ("gguf", "pytorch-bin") and not expect.errors:  # pickles and GGUF: no tensor count
        assert report.parameters > 0


def test_mistral_native_mode_is_derived_from_the_servers_arguments():
    assert loader_from_args(["--load-format=mistral", "--config-format=mistral"]) == "vllm-mistral"
    assert loader_from_args(["--load-format", "mistral"]) == "vllm-mistral"
    assert loader_from_args(["--tensor-parallel-size=4"]) == "vllm"


def test_a_repository_with_only_one_loadable_layout_keeps_it_whatever_the_loader():
    repo = REPOS["TheBloke/Mistral-7B-Instruct-v0.2-GGUF"]
    sel = choose([o.rel for o in listing(repo)], "vllm-mistral")
    assert sel.layout == "gguf" and not sel.skips
    assert any("GGUF files" in n for n in sel.notes)
    sel = choose([o.rel for o in listing(REPOS["Qwen/Qwen2.5-7B-Instruct"])], "vllm-mistral")
    assert sel.layout == "hf-safetensors" and not sel.skips
    assert any("no Mistral-native weights" in n for n in sel.notes)
