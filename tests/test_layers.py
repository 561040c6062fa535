"""The core packages never reach up into the staff features built on them.

The send, webhook and event paths are what every feature uses; the admin and support
features are built on them. A core module importing a feature module (as the send path once
imported the admin's rejection hook) makes the core depend on pages it should not know, and
is how import cycles start. What a channel's far side says about the setup goes through the
channel's own hook instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rxroute

SOURCE = Path(rxroute.__file__).parent
CORE = ("channels", "deliveries", "events", "prescriptions", "webhooks", "notifications")
FEATURES = ("rxroute.admin", "rxroute.support", "rxroute.prescriber")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_core_packages_do_not_import_staff_features() -> None:
    reaching_up = {
        f"{path.relative_to(SOURCE)} imports {name}"
        for package in CORE
        for path in (SOURCE / package).rglob("*.py")
        for name in _imports(path)
        if any(name == feature or name.startswith(feature + ".") for feature in FEATURES)
    }
    assert all((SOURCE / package).is_dir() for package in CORE)
    assert not reaching_up, sorted(reaching_up)
