"""Doctest set-up for the Markdown pages (``pytest --doctest-glob="*.md" docs``).

Every page is one doctest. A page may select backends; this fixture puts the
process-wide backend back afterwards, so the pages do not depend on each
other's order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import xplayers as xpl

# conf.py is Sphinx configuration, not a module with examples; _build holds output.
collect_ignore = ["conf.py"]
collect_ignore_glob = ["_build/*"]


@pytest.fixture(autouse=True)
def _restore_backend() -> Iterator[None]:
    before = xpl.get_backend()
    yield
    xpl.set_backend(before.name, before.device)
