"""axe-core in the browser tests: the rules a screen-reader or keyboard user depends on.

axe-core comes from npm (``tests/browser/package.json``, pinned with its integrity hash in
``package-lock.json``; ``scripts/test`` runs ``npm ci`` there). It is injected as an init
script, which Chromium runs outside the page's Content-Security-Policy, so the pages are
checked under their real, strict CSP. No rule is disabled: a violation of any impact fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

AXE_SCRIPT = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
MISSING = (
    "axe-core is not installed: run `npm ci --prefix tests/browser` (scripts/test does it) "
    "to check the pages' accessibility"
)


@dataclass(frozen=True)
class Violation:
    """One axe rule broken on one page, with the elements that break it."""

    page: str
    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(self.targets[:4])
        more = f" (+{len(self.targets) - 4} more)" if len(self.targets) > 4 else ""
        return f"{self.page}: [{self.impact}] {self.rule}: {self.help} at {where}{more}"


async def install(context: Any) -> None:
    """Make ``axe`` available on every page the context opens."""
    await context.add_init_script(path=str(AXE_SCRIPT))


#: Markup that is not rxroute's, left out of the check, and why. Only Swagger UI's rendering of
#: the API reference: its operation rows nest a button in a button and its theme's greys fail
#: contrast, both upstream (swagger-api/swagger-ui); rxroute's page around it is checked.
NOT_OURS = ("#swagger-ui",)


async def violations(page: Any, label: str) -> list[Violation]:
    """Run every axe rule over the page as it is now (all but :data:`NOT_OURS`)."""
    result = await page.evaluate(
        """async (notOurs) => await axe.run(
            {exclude: notOurs.map((selector) => [selector])},
            {resultTypes: ['violations']},
        )""",
        list(NOT_OURS),
    )
    found = []
    for rule in result["violations"]:
        targets = tuple(
            " ".join(str(part) for part in node["target"]) for node in rule.get("nodes", [])
        )
        found.append(
            Violation(
                page=label,
                rule=str(rule["id"]),
                impact=str(rule.get("impact") or "unknown"),
                help=str(rule["help"]),
                targets=targets,
            )
        )
    return found
