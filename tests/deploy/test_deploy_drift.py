"""Nothing under deploy/ (or in docs/deployment.md) names a variable the code does not read or
a file that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from deploy_helpers import DEPLOY, DEPLOYMENT_DOC, ENV_NAME, ROOT, known_env


def deployment_files() -> list:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    return [*files, ROOT / ".dockerignore", DEPLOYMENT_DOC]


def test_every_tempering_variable_named_is_one_the_code_reads() -> None:
    unknown = {}
    for path in deployment_files():
        for name in set(ENV_NAME.findall(path.read_text())) - known_env():
            unknown.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not unknown, f"variables no code reads (renamed or removed?): {unknown}"


MADE_BY_THE_OPERATOR = {"deploy/compose/tempering.env": "deploy/compose/tempering.env.example"}
"""Files the note tells the operator to make, from an example that must exist (and that git
must ignore, since they hold passwords)."""
PATH = re.compile(r"(?<![\w/.-])((?:deploy|docs|service|workers|client|tests)/[\w./-]*\w)")


def test_paths_the_deployment_doc_names_exist() -> None:
    paths = set(PATH.findall(DEPLOYMENT_DOC.read_text()))
    assert paths, "docs/deployment.md names no file?"
    missing = sorted(p for p in paths if not (ROOT / p).exists() and p not in MADE_BY_THE_OPERATOR)
    assert not missing, f"docs/deployment.md names files that do not exist: {missing}"
    for made, example in MADE_BY_THE_OPERATOR.items():
        assert (ROOT / example).is_file(), example
        ignored = (ROOT / made).parent / ".gitignore"
        assert Path(made).name in ignored.read_text().split(), f"git must ignore {made}"
