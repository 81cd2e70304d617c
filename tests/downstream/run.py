"""Install processpype's wheel into a fresh environment and test it from the outside.

    python tests/downstream/run.py --extras testing   # tox -e downstream
    python tests/downstream/run.py --no-extras        # tox -e downstream-minimal

Both build the wheel of this repository (``python -m build --wheel``) into a temporary
directory and create a fresh virtual environment outside the repository.

``--extras testing`` installs ``processpype[testing]`` from that wheel plus pytest-asyncio
and runs the tests of the example project in ``tests/downstream`` (copied to a temporary
directory, so nothing can import processpype from the source tree).

``--no-extras`` installs the wheel alone plus pytest, then checks that pytest still runs
a trivial project (``tests/downstream/minimal``) with the plugin present, that
``pytest --fixtures`` lists every processpype fixture, and that a fixture whose package
is missing fails with the ``pip install`` line instead of breaking pytest.

Any pytest exit code other than 0 fails the run, including 5 (no tests collected).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = (
    "processpype_recorder",
    "processpype_smtp_server",
    "processpype_smtp_server_factory",
    "processpype_telegram",
    "processpype_notifier",
    "processpype_webhooks",
    "processpype_redis",
)
OPTIONAL_PACKAGES = ("aiosmtpd", "aiosmtplib", "httpx", "respx", "telethon", "trustme")
INSTALL_HINT = "pip install 'processpype[testing]'"
PYTEST_EXIT_NO_TESTS = 5
_started = time.monotonic()


class CheckFailed(Exception):
    """A step of the run failed; the message says which and why."""


def progress(text: str) -> None:
    """Print one progress line with the elapsed time."""
    print(f"[downstream {time.monotonic() - _started:5.1f}s] {text}", flush=True)


def clean_env() -> dict[str, str]:
    """The environment for child processes: nothing that leaks the outer interpreter."""
    env = dict(os.environ)
    for name in (
        "PYTHONPATH",
        "PYTHONHOME",
        "VIRTUAL_ENV",
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    ):
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    command: list[str], *, cwd: Path | None = None, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``command``, echoing it; output is captured only when asked."""
    progress("$ " + shlex.join(command))
    return subprocess.run(
        command, cwd=cwd, env=clean_env(), text=True, capture_output=capture, check=False
    )


def build_wheel(workdir: Path) -> Path:
    """Build processpype's wheel under ``workdir`` and return its path.

    The build runs on a copy of the source, so no stale ``build/`` directory can slip old
    files into the wheel and the shared working tree is left untouched.
    """
    source = workdir / "source"
    outdir = workdir / "dist"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".tox",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "tests",
            "benchmarks",
        ),
    )
    progress(f"building the wheel of {REPO}")
    result = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)])
    if result.returncode != 0:
        raise CheckFailed(f"python -m build failed with exit code {result.returncode}")
    wheels = sorted(outdir.glob("processpype-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one processpype wheel in {outdir}, found {wheels}")
    progress(f"built {wheels[0].name}")
    return wheels[0]


def create_venv(path: Path) -> Path:
    """Create a fresh virtual environment at ``path``; return its python."""
    progress(f"creating a fresh virtual environment in {path}")
    result = run([sys.executable, "-m", "venv", "--clear", str(path)])
    if result.returncode != 0:
        raise CheckFailed(f"python -m venv failed with exit code {result.returncode}")
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = path / bindir / ("python.exe" if os.name == "nt" else "python")
    if not python.exists():
        raise CheckFailed(f"the new environment has no interpreter at {python}")
    return python


def install(python: Path, requirements: list[str]) -> None:
    """pip-install ``requirements`` into the environment of ``python``."""
    progress(f"installing {' '.join(requirements)}")
    result = run([str(python), "-m", "pip", "install", "--quiet", *requirements])
    if result.returncode != 0:
        raise CheckFailed(f"pip install failed with exit code {result.returncode}")


def copy_project(source: Path, workdir: Path) -> Path:
    """Copy a project out of the repository, so only the installed wheel is importable."""
    target = workdir / source.name
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(
            "run.py", "minimal", "__pycache__", ".pytest_cache", ".venv", "*.pyc"
        ),
    )
    return target


def check_installed_from_wheel(python: Path, venv: Path, cwd: Path) -> None:
    """Fail unless ``import processpype`` in the new environment loads the installed copy."""
    result = run(
        [str(python), "-c", "import processpype; print(processpype.__file__)"],
        cwd=cwd,
        capture=True,
    )
    if result.returncode != 0:
        raise CheckFailed(f"processpype does not import in the new environment:\n{result.stderr}")
    location = Path(result.stdout.strip()).resolve()
    if not location.is_relative_to(venv.resolve()):
        raise CheckFailed(f"processpype was imported from {location}, not from {venv}")
    progress(f"processpype imports from {location}")


def missing_packages(python: Path, names: tuple[str, ...]) -> list[str]:
    """The packages among ``names`` that the environment of ``python`` does not have."""
    code = (
        "import importlib.util as u, sys; print(*(n for n in sys.argv[1:] if not u.find_spec(n)))"
    )
    result = run([str(python), "-c", code, *names], capture=True)
    if result.returncode != 0:
        raise CheckFailed(f"cannot inspect the new environment:\n{result.stderr}")
    return result.stdout.split()


def run_pytest(python: Path, cwd: Path, *args: str, capture: bool = False) -> tuple[int, str]:
    """Run pytest in ``cwd``; return its exit code and (when captured) its output."""
    result = run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, capture=capture
    )
    output = (result.stdout or "") + (result.stderr or "")
    if capture:
        print(output, end="" if output.endswith("\n") else "\n", flush=True)
    return result.returncode, output


def require_success(code: int, what: str) -> None:
    """Fail unless pytest exited 0; exit code 5 (no tests collected) is a failure too."""
    if code == PYTEST_EXIT_NO_TESTS:
        raise CheckFailed(f"{what}: pytest collected no tests (exit code 5)")
    if code != 0:
        raise CheckFailed(f"{what}: pytest failed with exit code {code}")


def with_extras(wheel: Path, workdir: Path) -> None:
    """Install ``processpype[testing]`` and run the example project's tests."""
    venv = workdir / "venv"
    python = create_venv(venv)
    install(python, [f"processpype[testing] @ {wheel.as_uri()}", "pytest-asyncio>=0.23"])
    absent = missing_packages(python, OPTIONAL_PACKAGES)
    if absent:
        raise CheckFailed(f"the testing extra did not install {absent}")
    project = copy_project(HERE, workdir)
    check_installed_from_wheel(python, venv, project)
    progress(f"running the tests of {project.name} (copied to {project})")
    code, _ = run_pytest(python, project, "-v")
    require_success(code, "the downstream project's tests")


def without_extras(wheel: Path, workdir: Path) -> None:
    """Install the bare wheel and check that pytest still works with the plugin present."""
    venv = workdir / "venv"
    python = create_venv(venv)
    install(python, [str(wheel), "pytest>=8.0"])
    absent = missing_packages(python, OPTIONAL_PACKAGES)
    present = sorted(set(OPTIONAL_PACKAGES) - set(absent))
    if present:
        raise CheckFailed(f"the wheel without extras pulled in optional packages {present}")
    project = workdir / "minimal"
    shutil.copytree(
        HERE / "minimal", project, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    check_installed_from_wheel(python, venv, project)

    progress("checking that pytest --fixtures lists the processpype fixtures")
    code, output = run_pytest(python, project, "--fixtures", capture=True)
    require_success(code, "pytest --fixtures")
    unlisted = [name for name in FIXTURES if name not in output]
    if unlisted:
        raise CheckFailed(f"pytest --fixtures does not list {unlisted}")

    progress("running a trivial test project with the plugin present")
    code, _ = run_pytest(python, project, "-v")
    require_success(code, "the trivial project")

    progress("checking that a fixture whose package is missing says what to install")
    code, output = run_pytest(python, project, "check_missing_extra.py", capture=True)
    if code != 1 or INSTALL_HINT not in output:
        raise CheckFailed(
            f"processpype_smtp_server without aiosmtpd should fail the test with "
            f"{INSTALL_HINT!r}; pytest exited {code}"
        )


def main(argv: list[str] | None = None) -> int:
    """Build, install and test; return 0 when every check passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--extras",
        choices=["testing"],
        help="install the wheel with this extra and run the downstream project's tests",
    )
    mode.add_argument(
        "--no-extras",
        action="store_true",
        help="install the wheel without extras and check that pytest still works",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory for inspection"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="processpype-downstream-"))
    try:
        wheel = build_wheel(workdir)
        if args.no_extras:
            without_extras(wheel, workdir)
        else:
            with_extras(wheel, workdir)
    except CheckFailed as exc:
        progress(f"FAILED: {exc}")
        return 1
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    progress("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
