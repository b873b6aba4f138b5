"""The deployment files name commands and modules that exist, and agree with each other.

docker-compose.yml, deploy/Procfile, deploy/Dockerfile and the systemd units cannot be run
here (no Docker engine, no systemd in CI); these tests hold what can go stale without
running them: module paths, the ``celery -A`` target, the commands deploy/README.md gives
an operator, the variables the units read.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "worker1", "worker2", "web")


# --- a reader for the YAML that docker-compose.yml uses ----------------------------------
# PyYAML is not a dependency of the project, so this reads the subset the file is written
# in: block mappings and "- item" lists by indentation, plain, quoted and JSON-list ("[...]")
# scalars, anchors (&a), aliases (*a) and merge keys (<<: *a). Anything else fails loudly.


def _scalar(text: str, anchors: dict[str, Any]) -> Any:
    if text.startswith("*"):
        return anchors[text[1:]]
    if text.startswith(("[", '"')):
        return json.loads(text)
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text[:1] in "{&|>!%@`":
        raise ValueError(f"docker-compose.yml: YAML this reader does not handle: {text!r}")
    return int(text) if text.isdigit() else text


def _block(lines: list[tuple[int, str]], i: int, indent: int, anchors: dict[str, Any]) -> Any:
    if lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            items.append(_scalar(lines[i][1][2:].strip(), anchors))
            i += 1
        return items, i
    mapping: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        key, _, rest = lines[i][1].partition(":")
        rest = rest.strip()
        i += 1
        anchor = None
        if rest.startswith("&"):
            anchor, _, rest = rest[1:].partition(" ")
            rest = rest.strip()
        if rest:
            value = _scalar(rest, anchors)
        elif i < len(lines) and lines[i][0] > indent:
            value, i = _block(lines, i, lines[i][0], anchors)
        else:
            value = None
        if anchor:
            anchors[anchor] = value
        if key == "<<":
            merged.update(value)
        else:
            mapping[key] = value
    return {**merged, **mapping}, i


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as a dict (with merge keys resolved, as Compose does)."""
    lines = [
        (len(line) - len(line.lstrip(" ")), line.strip())
        for line in COMPOSE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    document, end = _block(lines, 0, 0, {})
    assert end == len(lines), f"docker-compose.yml: could not read line {lines[end]}"
    assert isinstance(document, dict)
    return document


# --- helpers -----------------------------------------------------------------------------


def compose_shell_command(service: dict[str, Any]) -> str:
    """The command as a shell line, after Compose's own `$$` -> `$` unescaping."""
    argv = [arg.replace("$$", "$") for arg in service["command"]]
    if argv[:2] == ["sh", "-c"]:
        return str(argv[2])
    return shlex.join(argv)


def procfile() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def celery_app_module(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "celery" and argv[1] == "-A", command
    return argv[2]


def python_module(command: str) -> str:
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-m"], command
    return argv[2]


def module_source(name: str) -> Path:
    # find_spec imports the parent packages only, never the module itself: proj would
    # build a Celery app and open the run store.
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, f"no module {name}"
    return Path(spec.origin)


def assert_runs_as_main(name: str) -> None:
    spec = importlib.util.find_spec(name)
    assert spec is not None, f"`python -m {name}`: no module {name}"
    if spec.submodule_search_locations is not None:
        assert importlib.util.find_spec(f"{name}.__main__") is not None, f"{name} has no __main__"
    else:
        assert 'if __name__ == "__main__":' in module_source(name).read_text()


def assert_defines_celery_app(name: str) -> None:
    """``celery -A name`` finds the Celery app in the module's ``app`` attribute."""
    tree = ast.parse(module_source(name).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            func = node.value.func
            if "app" in targets and isinstance(func, ast.Name) and func.id == "Celery":
                return
    raise AssertionError(f"`celery -A {name}`: {name} has no top-level `app = Celery(...)`")


def env_example() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            entries[name] = value
    return entries


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_reader_fails_loudly_on_yaml_it_does_not_handle() -> None:
    with pytest.raises(ValueError, match="does not handle"):
        _scalar("{a: 1}", {})


def test_compose_services_are_the_documented_set() -> None:
    services = load_compose()["services"]

    assert set(services) == {"redis", "postgres", *APP_SERVICES}
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "postgres:15"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_build_from_the_deploy_dockerfile(name: str) -> None:
    build = load_compose()["services"][name]["build"]

    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_commands_are_the_ones_deploy_readme_shows(name: str) -> None:
    command = compose_shell_command(load_compose()["services"][name])

    assert f"`{command}`" in (DEPLOY / "README.md").read_text()


def test_compose_workers_run_the_celery_app_module() -> None:
    services = load_compose()["services"]
    targets = {
        celery_app_module(compose_shell_command(services[w])) for w in ("worker1", "worker2")
    }

    assert targets == {"celery_workflows.examples.webapp.proj"}
    assert_defines_celery_app("celery_workflows.examples.webapp.proj")


@pytest.mark.parametrize("name", ["migrate", "web"])
def test_compose_python_commands_name_runnable_modules(name: str) -> None:
    command = compose_shell_command(load_compose()["services"][name])

    assert_runs_as_main(python_module(command))


def test_compose_migrate_runs_once_after_postgres_is_healthy() -> None:
    services = load_compose()["services"]

    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


@pytest.mark.parametrize("name", ["worker1", "worker2", "web"])
def test_compose_workers_and_web_start_after_the_migration(name: str) -> None:
    depends_on = load_compose()["services"][name]["depends_on"]

    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    assert depends_on["redis"] == {"condition": "service_healthy"}


def test_compose_app_services_share_one_broker_and_one_database() -> None:
    services = load_compose()["services"]
    environments = [services[name]["environment"] for name in APP_SERVICES]

    assert all(env == environments[0] for env in environments)
    assert environments[0]["CELERY_BROKER_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in environments[0]["CELERY_WORKFLOWS_DATABASE_URL"]


def test_compose_leaves_variables_to_the_container_shell() -> None:
    # A single `$` would be filled in by Compose from the host's environment.
    lines = COMPOSE.read_text().replace("$$", "").splitlines()

    assert [line for line in lines if "$" in line and not line.lstrip().startswith("#")] == []


def test_compose_redis_keeps_no_persistence() -> None:
    command = load_compose()["services"]["redis"]["command"]

    assert command == ["redis-server", "--save", "", "--appendonly", "no"]


# --- Procfile, Dockerfile, systemd, env.example ------------------------------------------


def test_procfile_defines_web_worker_and_migrate() -> None:
    assert set(procfile()) == {"web", "worker", "migrate"}


def test_procfile_commands_name_modules_that_exist() -> None:
    entries = procfile()

    assert_defines_celery_app(celery_app_module(entries["worker"]))
    assert_runs_as_main(python_module(entries["web"]))
    assert_runs_as_main(python_module(entries["migrate"]))


def test_procfile_and_compose_run_the_same_worker_and_migration() -> None:
    services = load_compose()["services"]
    entries = procfile()

    assert entries["worker"] == compose_shell_command(services["worker1"])
    assert entries["migrate"] == compose_shell_command(services["migrate"])


def test_procfile_is_shown_verbatim_in_deploy_readme() -> None:
    text = (DEPLOY / "Procfile").read_text()

    assert text in (DEPLOY / "README.md").read_text()


def test_dockerfile_default_command_is_the_compose_worker_command() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)

    assert cmd is not None
    assert json.loads(cmd.group(1)) == load_compose()["services"]["worker1"]["command"]


def test_dockerfile_runs_as_a_user_that_is_not_root() -> None:
    users = re.findall(r"^USER (\S+)$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)

    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_copies_paths_that_exist() -> None:
    copies = re.findall(r"^COPY (.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    sources = [source for line in copies for source in line.split()]

    assert "pyproject.toml" in sources
    assert "celery_workflows" in sources
    assert all((ROOT / source).exists() for source in sources), sources


def test_systemd_units_read_only_variables_that_env_example_defines() -> None:
    defined = set(env_example())
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        used = set(re.findall(r"\$\{(\w+)\}", unit.read_text()))

        assert used, unit.name
        assert used <= defined, f"{unit.name} reads {sorted(used - defined)}"


def test_systemd_worker_unit_runs_the_documented_worker() -> None:
    unit = (DEPLOY / "systemd" / "celery-workflows-worker@.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start is not None
    env = env_example()
    command = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start.group(1))

    documented = procfile()["worker"]
    assert command.split()[0].endswith("/bin/celery")
    assert command.split()[1:-1] == documented.split()[1:]
    assert command.split()[-1] == "--hostname=worker%i@%%h"


def test_env_example_names_the_settings_the_example_project_reads() -> None:
    env = env_example()
    source = module_source(env["CELERY_APP"]).read_text()

    assert env["CELERY_APP"] == celery_app_module(procfile()["worker"])
    for name in ("CELERY_BROKER_URL", "CELERY_WORKFLOWS_DATABASE_URL"):
        assert name in env
        assert f'os.environ.get("{name}"' in source
