"""The dependency split, read from pyproject.toml, requirements/*.lock and the Containerfile.

The service imports none of the heavy optional packages (Airflow, Evidently, Optuna, Dash,
scikit-learn, SciPy, Matplotlib); every lock pins each package with hashes at the version of
all-dev.lock (what the tests run with) and holds the extras of its image; every image target
built FROM base has its lock. Each check returns its problems and also runs on a broken example.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.test_compose_config import CONTAINERFILE, REPO, containerfile_targets

LOCKS = REPO / "requirements"
# lock -> the extras it must hold (the core always)
LOCK_EXTRAS = {
    "serving": {"serving"},
    "dashboard": {"dashboard"},
    "worker": {"train", "serving"},
    "airflow": {"serving", "train", "airflow", "monitoring", "dashboard"},
    "all-dev": {"serving", "train", "airflow", "monitoring", "dashboard", "dev"},
}
HEAVY = {"airflow", "evidently", "optuna", "dash", "plotly", "sklearn", "scipy", "matplotlib"}
HEAVY_DISTS = {"apache-airflow", "evidently", "optuna", "dash", "plotly", "scikit-learn",
               "scipy", "matplotlib", "mlflow"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")

# The service's imports (start, batch scoring, loading a registry model) with the heavy
# packages made uninstalled: a finder in front of sys.meta_path refuses them, as the serving
# image would (optional imports, e.g. mlflow's of scipy.sparse, then take their fallback).
BLOCKED_IMPORTS = """
import json, sys

class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Uninstalled())
{imports}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""
SERVICE_IMPORTS = """
import serving.main, serving.batch, serving.cli
from trajectory import tracking
serving.main.create_app
"""


def import_without_heavy(imports: str) -> subprocess.CompletedProcess[str]:
    script = BLOCKED_IMPORTS.format(heavy=sorted(HEAVY), imports=imports)
    return subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def parse_lock(text: str) -> tuple[dict[str, str], list[str]]:
    """name -> version of a pip-compile --generate-hashes file, and the pins without a hash."""
    pins: dict[str, str] = {}
    unhashed: list[str] = []
    entries = re.split(r"\n(?=\S)", text)
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        name = str(canonicalize_name(match[1]))
        pins[name] = match[2]
        if "--hash=sha256:" not in entry:
            unhashed.append(name)
    return pins, unhashed


def project_requirements() -> dict[str, set[str]]:
    """"core" and each extra -> the distribution names it asks for (self-references left out)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {
        group: {str(canonicalize_name(Requirement(r).name)) for r in reqs} - {"trajectory"}
        for group, reqs in groups.items()
    }


def lock_problems(name: str, text: str, reference: dict[str, str],
                  wanted: set[str]) -> list[str]:
    """Unhashed pins, versions other than the reference lock's, requirements left out."""
    pins, unhashed = parse_lock(text)
    problems = [f"{name}: {dist} has no hash" for dist in unhashed]
    problems += [f"{name}: {dist}=={version}, all-dev.lock has {reference.get(dist)}"
                 for dist, version in pins.items() if reference.get(dist) != version]
    problems += [f"{name}: {dist} is not locked" for dist in sorted(wanted - set(pins))]
    return problems


def target_lock_problems(containerfile: str, locks: set[str]) -> list[str]:
    """A target built FROM base installs requirements/<target>.lock (scripts/build_images.sh
    passes LOCK=<target>); any other stage must name the lock it installs."""
    problems = []
    stages = re.split(r"(?im)^FROM\s+", containerfile)[1:]
    for stage in stages:
        head, _, body = stage.partition("\n")
        match = re.match(r"(\S+)\s+AS\s+(\S+)", head, re.IGNORECASE)
        if match is None:
            continue
        parent, target = match[1], match[2]
        if parent == "base" and target not in locks:
            problems.append(f"{target}: no requirements/{target}.lock")
        named = set(re.findall(r"/requirements/([\w-]+)\.lock", body))
        problems += [f"{target}: no requirements/{lock}.lock" for lock in named - locks]
        if "pip install" in body and "--require-hashes" not in body:
            problems.append(f"{target}: installs without --require-hashes")
    return problems


def lock_texts() -> dict[str, str]:
    return {path.stem: path.read_text() for path in LOCKS.glob("*.lock")}


def test_the_service_imports_without_the_heavy_packages() -> None:
    out = import_without_heavy(SERVICE_IMPORTS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {"serving", "torch", "mlflow"} <= set(json.loads(out.stdout.splitlines()[-1]))


def test_the_serving_extra_and_lock_leave_out_the_heavy_packages() -> None:
    groups = project_requirements()
    assert groups["core"] & HEAVY_DISTS == set()
    assert groups["serving"] & HEAVY_DISTS == set()
    pins, _ = parse_lock(lock_texts()["serving"])
    assert "mlflow-skinny" in pins
    assert set(pins) & HEAVY_DISTS == set()


def test_the_all_extra_is_what_lock_sh_locks_for_airflow_and_all_dev() -> None:
    """scripts/lock.sh spells `all` out (a self-reference would lock the project itself)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (self_reference,) = project["optional-dependencies"]["all"]
    assert set(Requirement(self_reference).extras) == LOCK_EXTRAS["airflow"]
    spelled = re.search(r"(?m)^ALL=\((.*)\)", (REPO / "scripts" / "lock.sh").read_text())
    assert spelled and set(spelled[1].split()) == LOCK_EXTRAS["airflow"]


def test_every_lock_is_hashed_at_the_tested_versions_and_holds_its_extras() -> None:
    texts = lock_texts()
    assert set(LOCK_EXTRAS) | {"mlflow", "build"} <= set(texts)
    reference, _ = parse_lock(texts["all-dev"])
    groups = project_requirements()
    problems = []
    for name, text in texts.items():
        wanted = set().union(groups["core"], *(groups[e] for e in LOCK_EXTRAS[name])) \
            if name in LOCK_EXTRAS else set()
        problems += lock_problems(name, text, reference, wanted)
    assert problems == []
    assert reference["torch"] == "2.13.0+cpu"


def test_every_image_target_installs_its_own_lock() -> None:
    text = CONTAINERFILE.read_text()
    assert {"serving", "dashboard", "worker", "airflow", "mlflow"} <= set(
        containerfile_targets(text))
    assert target_lock_problems(text, set(lock_texts())) == []


# --- the checks catch what they are for ------------------------------------------------------

BROKEN_LOCK = """\
numpy==2.0.0 \\
    --hash=sha256:00
    # via pandas
pandas==2.3.3
    # via trajectory (pyproject.toml)
"""


def test_the_import_check_fails_on_a_module_that_needs_a_heavy_package() -> None:
    out = import_without_heavy("import trajectory.plots")  # matplotlib at its top
    assert out.returncode != 0 and "No module named 'matplotlib" in out.stderr


def test_checks_fail_on_a_broken_lock_and_containerfile() -> None:
    assert parse_lock(BROKEN_LOCK) == ({"numpy": "2.0.0", "pandas": "2.3.3"}, ["pandas"])
    assert lock_problems("x", BROKEN_LOCK, {"numpy": "2.4.6", "pandas": "2.3.3"},
                         {"numpy", "torch"}) == [
        "x: pandas has no hash", "x: numpy==2.0.0, all-dev.lock has 2.4.6",
        "x: torch is not locked"]
    broken = ("FROM x AS base\nFROM base AS serving\nFROM base AS extra\n"
              "FROM x AS mlflow\nRUN pip install -r /requirements/mlflow.lock\n")
    assert target_lock_problems(broken, {"serving"}) == [
        "extra: no requirements/extra.lock", "mlflow: no requirements/mlflow.lock",
        "mlflow: installs without --require-hashes"]
