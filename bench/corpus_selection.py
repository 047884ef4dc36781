"""What ``--select auto`` copies from each real repository of the fixture corpus: selected bytes vs all bytes.

    .venv/bin/python bench/corpus_selection.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.models.corpus import all_repos
from tests.support.realmodels import listing

from modelpvc.model.select import choose


def main() -> int:
    print("| repository | loader | layout kept | selected GB | all GB | skipped | sizes |")
    print("|---|---|---|---|---|---|---|")
    for repo in all_repos():
        objs = listing(repo)
        total = sum(o.size for o in objs)
        for loader in repo.expect:
            sel = choose([o.rel for o in objs], loader)
            kept = sum(o.size for o in objs if o.rel not in sel.skips)
            print(f"| {repo.id} | {loader} | {sel.layout or '-'} | {kept / 1e9:.2f} | {total / 1e9:.2f} | "
                  f"{len(sel.skips)} files | {repo.sizes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
