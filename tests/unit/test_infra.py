"""The deployment files agree with each other, with the Makefile and with the settings.

No container engine runs in the tests: these read ``infra/docker-compose.yml``,
``infra/Dockerfile``, ``.env.example``, ``.dockerignore``, the PostgreSQL init script and the
port table of ``docs/deploy.md``, and check what a typo in one of them would break: a variable
missing from ``.env.example``, a port published elsewhere than documented, a database the init
script never creates, a uv other than the Makefile's, an image that runs as root.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
INIT_SQL = INFRA / "postgres" / "init-databases.sql"
DOCS = REPO / "docs" / "deploy.md"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $.
_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")
# The parts of the desk that come later run only when their profile is asked for.
LATER = {"dashboard", "trader", "mt4-sim"}
ALWAYS = {"postgres", "prefect-server", "mlflow", "serve"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Fill in ``text`` as compose does, from ``env``.

    Raises
    ------
    KeyError
        If a required variable (``${NAME:?message}``) is unset or empty.
    """

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name is None:
            return "$"
        value = env.get(name)
        unset = value is None or (operator is not None and operator.startswith(":") and not value)
        if operator is not None and operator.endswith("?") and unset:
            raise KeyError(f"{name}: {argument}")
        if operator is not None and operator.endswith("-") and unset:
            return argument
        return value or ""

    return _REFERENCE.sub(one, text)


def env_example() -> dict[str, str]:
    """Return the variables of ``.env.example`` as compose reads them (quotes removed)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def command_words(service: dict[str, Any]) -> list[str]:
    """Return a service's command as a list of words (compose accepts a string or a list)."""
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def _filled(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: _filled(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_filled(value, env) for value in node]
    return node


def compose(env: dict[str, str]) -> dict[str, Any]:
    """Return the compose file with its string values interpolated from ``env``, as compose
    does (after parsing, so ``${URLS:-[]}`` stays the string ``[]``)."""
    loaded: dict[str, Any] = _filled(yaml.safe_load(COMPOSE.read_text()), env)
    return loaded


def published_ports(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Return each service's published ports: service -> (container port, host address:port)."""
    ports = {}
    for name, service in config["services"].items():
        for spec in service.get("ports", []):
            address, host_port, container_port = str(spec).rsplit(":", 2)
            ports[name] = (container_port, f"{address}:{host_port}")
    return ports


def documented_ports() -> dict[str, tuple[str, str]]:
    """Return the port table of ``docs/deploy.md``: service -> (container port, published on)."""
    section = DOCS.read_text().split("### Ports", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| ([\d-]+) \| ([\d.:-]+) \|", section, re.MULTILINE)
    return {service: (container, published) for service, container, published in rows}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """Return the instructions of the Dockerfile's last stage, its FROM first."""
    instructions = dockerfile_instructions()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


# -- interpolation, as the tests below rely on it --------------------------------------------


def test_interpolate_defaults_required_and_literal_dollar_as_compose() -> None:
    # Arrange
    env = {"SET": "x", "EMPTY": ""}

    # Act
    text = interpolate("${SET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $${SET}", env)

    # Assert
    assert text == "x d  d ${SET}"
    with pytest.raises(KeyError, match="needed"):
        interpolate("${UNSET:?needed}", env)


# -- compose -----------------------------------------------------------------------------------


def test_compose_every_variable_used_is_listed_in_env_example() -> None:
    # Arrange
    text = COMPOSE.read_text()

    # Act
    used = {m.group(1) for m in _REFERENCE.finditer(text) if m.group(1)}
    bare = re.findall(r"(?<!\$)\$(?![{$])\w+", text)

    # Assert
    assert used, "no ${VAR} found: the pattern no longer matches the compose file"
    assert sorted(used - env_example().keys()) == []
    assert bare == [], "write ${NAME}, or $$NAME for the container's own shell"


def test_compose_every_service_has_an_image_and_solodesk_builds_from_infra_dockerfile() -> None:
    # Arrange
    services = compose(env_example())["services"]

    # Act
    without_image = sorted(n for n, s in services.items() if "image" not in s and "build" not in s)
    builds = {n: s["build"] for n, s in services.items() if "build" in s}

    # Assert
    assert without_image == []
    assert services.keys() >= ALWAYS | LATER
    assert services["postgres"]["image"].startswith("postgres:")
    for name, build in builds.items():
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert services[name]["image"] == services["serve"]["image"], name


def test_compose_later_parts_run_only_in_their_profiles() -> None:
    # Arrange
    services = compose(env_example())["services"]

    # Act
    profiled = {name for name, service in services.items() if service.get("profiles")}

    # Assert
    assert profiled >= LATER
    assert not ALWAYS & profiled
    assert services["mt4-sim"]["profiles"] == ["mt4"]


def test_compose_ports_bind_as_documented_with_env_example_and_with_defaults() -> None:
    # Arrange
    documented = documented_ports()
    required_only = {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p"}

    # Act
    from_example = published_ports(compose(env_example()))
    from_defaults = published_ports(compose(required_only))

    # Assert
    assert documented, "the port table of docs/deploy.md was not found"
    assert from_example == documented
    assert from_defaults == documented
    assert all(published.startswith("127.0.0.1:") for _, published in documented.values())


def test_compose_required_passwords_refuse_a_missing_env_file() -> None:
    # Arrange
    env: dict[str, str] = {}

    # Act / Assert
    with pytest.raises(KeyError, match="POSTGRES_"):
        compose(env)


def test_compose_service_urls_name_a_service_and_the_port_it_publishes() -> None:
    # Arrange
    config = compose(env_example())
    services = config["services"]
    listening = {name: container for name, (container, _) in published_ports(config).items()}

    # Act
    urls = [
        (name, value)
        for name, service in services.items()
        for value in [*(service.get("environment") or {}).values(), *command_words(service)]
        if isinstance(value, str) and "://" in value
    ]
    internal = [(name, urlsplit(url)) for name, url in urls if urlsplit(url).hostname in services]

    # Assert
    assert len(internal) >= 4, urls
    for name, url in internal:
        assert str(url.port) == listening[str(url.hostname)], f"{name}: {url.geturl()}"


def test_compose_databases_are_created_by_the_init_script_and_name_a_driver() -> None:
    # Arrange
    config = compose(env_example())
    urls = re.findall(r"(postgresql[\w+]*)://[^@\s]+@postgres:5432/(\w+)", json.dumps(config))
    created = set(re.findall(r"CREATE DATABASE (\w+);", INIT_SQL.read_text()))

    # Act
    used = {database for _, database in urls}
    schemes = {scheme for scheme, _ in urls}

    # Assert
    assert used == {"optuna", "mlflow", "prefect"}
    assert used <= created
    assert schemes == {"postgresql+psycopg2", "postgresql+asyncpg"}
    mounts = config["services"]["postgres"]["volumes"]
    assert any(
        m.startswith("./postgres/init-databases.sql:/docker-entrypoint-initdb.d/") for m in mounts
    )


def test_compose_dependencies_and_volumes_are_declared() -> None:
    # Arrange
    config = compose(env_example())
    services = config["services"]

    # Act
    depends = {d for s in services.values() for d in s.get("depends_on", [])}
    named = {
        str(m).split(":", 1)[0]
        for s in services.values()
        for m in s.get("volumes", [])
        if not str(m).startswith(".")
    }

    # Assert
    assert depends <= services.keys()
    assert named <= (config.get("volumes") or {}).keys()
    for name in ("serve", "dashboard", "trader"):
        assert "desk-home:/data" in services[name]["volumes"], name


def test_compose_desk_environment_loads_as_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Arrange
    services = compose(env_example())["services"]
    environment = {k: str(v) for k, v in services["serve"]["environment"].items()}
    assert environment["SOLODESK_CONFIG"] == "/data/solodesk.toml"
    environment["SOLODESK_CONFIG"] = str(tmp_path / "absent.toml")  # not this machine's /data
    for name in list(os.environ):
        if name.startswith("SOLODESK_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    # Act
    settings = load_settings()

    # Assert
    assert settings.home == Path("/data")
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert (settings.optuna_storage or "").startswith("postgresql+psycopg2://solodesk:")
    assert not settings.dask_scheduler
    assert settings.notify.urls == ()
    assert environment["PREFECT_API_URL"] == "http://prefect-server:4200/api"


# -- Dockerfile and build context ----------------------------------------------------------------


def test_dockerfile_uv_version_equals_the_makefiles() -> None:
    # Arrange
    makefile = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    args = [a for k, a in dockerfile_instructions() if k == "ARG" and a.startswith("UV_VERSION=")]

    # Act
    installs = [a for k, a in dockerfile_instructions() if k == "RUN" and "uv==" in a]

    # Assert
    assert makefile is not None
    assert args == [f"UV_VERSION={makefile.group(1)}"]
    assert len(installs) == 1 and '"uv==${UV_VERSION}"' in installs[0]


def test_dockerfile_installs_from_the_lock_without_dev_group() -> None:
    # Arrange
    runs = [a for k, a in dockerfile_instructions() if k == "RUN"]

    # Act
    syncs = [r for r in runs if "uv sync" in r]

    # Assert
    assert len(syncs) == 2
    assert all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "--no-install-project" in syncs[0] and "--no-install-project" not in syncs[1]
    assert "source=uv.lock" in syncs[0]


def test_dockerfile_runtime_is_python_slim_non_root_with_home_on_a_volume() -> None:
    # Arrange
    stage = final_stage()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text())

    # Act
    users = [a for k, a in stage if k == "USER"]
    entrypoint = [json.loads(a) for k, a in stage if k == "ENTRYPOINT"]
    env = " ".join(a for k, a in stage if k == "ENV")
    volumes = [json.loads(a) for k, a in stage if k == "VOLUME"]
    stages = {a.split()[-1]: a.split()[0] for k, a in dockerfile_instructions() if k == "FROM"}

    # Assert
    assert base is not None and base.group(1) == "python:3.11-slim"
    assert stages["base"] == "${PYTHON_IMAGE}"
    assert stages["builder"] == stages["runtime"] == "base"
    assert stage[0] == ("FROM", "base AS runtime")
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0)
    assert entrypoint == [["solodesk"]]
    assert "SOLODESK_HOME=/data" in env
    assert volumes == [["/data"]]


def test_dockerignore_keeps_secrets_environments_and_data_out_of_the_image() -> None:
    # Arrange
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    # Act
    missing = {".env", ".venv/", ".tools/", "data/", ".git/"} - patterns

    # Assert
    assert missing == set()
    assert not {"uv.lock", "pyproject.toml", "README.md"} & patterns


def test_env_example_notify_urls_is_a_json_list_and_passwords_are_placeholders() -> None:
    # Arrange
    values = env_example()

    # Act
    urls = json.loads(values["SOLODESK_NOTIFY__URLS"])

    # Assert
    assert urls == []
    assert values["POSTGRES_PASSWORD"].startswith("change-me")
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", values["POSTGRES_PASSWORD"]), "URL-safe password"
