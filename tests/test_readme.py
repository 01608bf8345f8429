"""The README opens with the two commands, and .ci/run runs the test one verbatim."""
import pathlib
import re

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10: tomli, which mypy (the test extra) needs there
    import tomli as tomllib

from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_an_install_and_run_command_and_a_test_command():
    main_job, tests = _readme_commands()
    assert main_job.endswith("verify run") and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_ci_builds_its_venv_in_a_temporary_directory_not_in_the_checkout():
    script = (ROOT / ".ci" / "run").read_text()
    assert 'TMP="$(mktemp -d)"' in script and 'VENV="$TMP/venv"' in script and "export VENV" in script
    assert "rm -rf .venv" not in script


def _pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "oldest-versions.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_ci_tests_the_lower_bound_of_every_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    lower = dict(re.match(r"([\w-]+)>=([\w.]+)", d).groups() for d in declared)
    assert {name: Version(v) for name, v in _pins().items()} == {name: Version(v) for name, v in lower.items()}
    assert all(re.fullmatch(r"[\w-]+>=[\w.]+,<[\w.]+", d) for d in declared)    # bounded above too
    assert "-c .ci/oldest-versions.txt" in (ROOT / ".ci" / "matrix").read_text()        # the py310-oldest cell
    assert "grep -v '^torch==' .ci/oldest-versions.txt" in (ROOT / ".ci" / "run").read_text()


def test_the_matrix_s_oldest_cell_runs_the_oldest_python_that_pyproject_toml_allows():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    oldest_python = re.match(r">=3\.(\d+)", project["requires-python"]).group(1)
    matrix = (ROOT / ".ci" / "matrix").read_text()
    assert f"py3{oldest_python}-*) echo 3.{oldest_python}" in matrix and f"CELLS=(py3{oldest_python}-oldest " in matrix


def test_ci_runs_the_wheel_test_which_runs_every_command_from_the_installed_wheel():
    assert "\n.ci/wheel\n" in (ROOT / ".ci" / "run").read_text()
    wheel = (ROOT / ".ci" / "wheel").read_text()
    for command in ("verify run", "verify check --impl", "verify mutants", "verify explain --tutorial-example",
                    "verify train",
                    "--format \"$format\"", "twine check", "--verify-report gate"):
        assert command in wheel, command
