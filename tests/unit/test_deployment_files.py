"""The deployment files (ops/Dockerfile, ops/compose.yaml, ops/requirements.lock, .dockerignore)
agree with the code: a setting or command renamed, a dependency added to pyproject.toml
without relocking, or a root user slipping in fails here, before an image is ever built."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml
from dotenv import dotenv_values
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from trading_engine.app.cli.commands import cli
from trading_engine.app.runtime.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
ENGINE_ROLES = ("strategy", "execution")


# ----- Dockerfile ----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in (OPS / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _final_stage() -> list[tuple[str, str]]:
    """The engine's runtime stage: `runtime`, which the default (last) target `engine` is."""
    instructions = _instructions()
    froms = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    last = instructions[froms[-1]][1].split()
    assert last[0] == "runtime", "the default target is the engine's runtime stage"
    assert last[-1] == "engine", "the default target is named engine"
    start = next(i for i in froms if instructions[i][1].split()[-1] == "runtime")
    end = next((i for i in froms if i > start), len(instructions))
    return instructions[start:end]


def test_the_image_runs_as_a_fixed_non_root_user_before_the_entrypoint() -> None:
    stage = _final_stage()
    ops = [op for op, _ in stage]
    users = [args.strip() for op, args in stage if op == "USER"]
    assert users, "the runtime stage sets no USER: the engine would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0")
    assert group not in ("root", "0")
    assert user.isdigit(), "a numeric uid lets runAsNonRoot check it"
    assert int(user) >= 1000
    last_user = max(i for i, op in enumerate(ops) if op == "USER")
    assert last_user < ops.index("ENTRYPOINT")
    assert "RUN" not in ops[last_user:], "nothing is run as root after switching user"


def test_the_entrypoint_is_the_engine_command_and_runs_the_service_by_default() -> None:
    stage = dict(_final_stage())
    entrypoint = shlex.split(stage["ENTRYPOINT"].strip("[]").replace(",", " "))
    # tini first: signals reach the engine even before Python has its handler
    assert entrypoint == ["tini", "-e", "143", "--", "trading-engine"]
    assert shlex.split(stage["CMD"].strip("[]").replace(",", " ")) == ["run"]


def test_the_healthcheck_asks_livez_on_the_health_port_the_image_sets() -> None:
    stage = _final_stage()
    healthcheck = next(args for op, args in stage if op == "HEALTHCHECK")
    assert "/livez" in healthcheck
    assert "HEALTH_PORT" in healthcheck
    env = " ".join(args for op, args in stage if op == "ENV")
    assert re.search(r"\bHEALTH_PORT=\d+", env)
    assert "HEALTH_HOST=0.0.0.0" in env


def test_dependencies_come_from_the_lock_with_hashes_and_the_project_as_a_wheel() -> None:
    runs = [args for op, args in _instructions() if op == "RUN"]
    from_lock = [run for run in runs if "requirements.lock" in run]
    assert from_lock
    assert all("--require-hashes" in run for run in from_lock)
    project = [run for run in runs if re.search(r"pip install .*/trading_engine-\*\.whl", run)]
    assert project
    assert all("--no-deps" in run for run in project)
    assert not [run for run in runs if re.search(r"pip install .*-e ", run)], "no editable tree"


def test_no_secret_is_baked_into_the_image() -> None:
    for op, args in _instructions():
        if op in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"API_KEY|API_SECRET|PASSWORD|TOKEN", args, re.I), args


def _copies() -> dict[str, str]:
    """Repository path -> image path of each COPY from the build context."""
    copies, workdir = {}, "/"
    for op, args in _instructions():
        if op == "FROM":
            workdir = "/"
        elif op == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / args.strip())
        elif op == "COPY" and "--from=" not in args:
            *sources, dest = args.split()
            for source in sources:
                target = PurePosixPath(workdir) / dest
                if (dest.endswith("/") and len(sources) > 1) or dest in ("./", "."):
                    target = target / PurePosixPath(source).name
                copies[source.rstrip("/")] = str(target)
    return copies


def test_the_image_runs_from_the_wheel_with_no_source_tree_beside_it() -> None:
    # Migrations and the bundled sample are package data (importlib.resources): the runtime
    # stage copies the virtualenv only, and needs no folder named by TRADING_ENGINE_MIGRATIONS.
    final = _final_stage()
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], copies
    env = " ".join(args for op, args in final if op == "ENV")
    assert "TRADING_ENGINE_MIGRATIONS" not in env


def test_every_copied_path_exists_and_the_build_context_lets_it_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: nothing reaches the build unless named"

    def sent(path: str) -> bool:  # Docker's rule: the last matching pattern decides
        verdict = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            glob = pattern.lstrip("!").rstrip("/")
            parents = [str(p) for p in PurePosixPath(path).parents if str(p) != "."]
            if any(fnmatch.fnmatch(candidate, glob) for candidate in [path, *parents]):
                verdict = negated
        return verdict

    for source in _copies():
        assert (ROOT / source).exists(), source
        assert sent(source), f"{source} is copied but .dockerignore leaves it out"
    for private in ("ops/.env", ".env", ".venv/bin/python", "data/trading-engine.sqlite3"):
        assert not sent(private), f"{private} would be sent to the image build"


# ----- the lock ------------------------------------------------------------------------------


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement in ops/requirements.lock."""
    text = (OPS / "requirements.lock").read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        lines = [part.strip() for part in block.replace("\\\n", " ").splitlines()]
        head = lines[0] if lines else ""
        if not head or head.startswith("#"):
            continue
        spec, *options = head.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", spec)
        assert match, f"not pinned with ==: {spec!r}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


def test_every_locked_requirement_is_pinned_and_hashed() -> None:
    locked = _locked()
    assert len(locked) > 20
    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no --hash: pip --require-hashes would refuse the lock"


def test_every_runtime_dependency_is_locked_at_a_version_pyproject_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for line in [*project["dependencies"], *build]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in ops/requirements.lock (ops/lock.sh)"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (
            f"{requirement.name} {locked[name][0]} in the lock, pyproject.toml says {line}"
        )


# ----- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((OPS / "compose.yaml").read_text())


def _engine_services(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "ops/Dockerfile"
        and service["build"].get("target") == "engine"
    }


def test_the_stack_has_its_servers_and_the_engine_roles_from_one_image(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "standin", "migrate", "feed", *ENGINE_ROLES):
        assert name in services, name
    engine = _engine_services(compose)
    assert set(ENGINE_ROLES) <= set(engine)
    assert len({service["image"] for service in engine.values()}) == 1
    assert len({repr(service["build"]) for service in engine.values()}) == 1


def test_strategy_and_execution_run_separately_with_their_own_flags(compose: dict) -> None:
    strategy = compose["services"]["strategy"]["environment"]
    execution = compose["services"]["execution"]["environment"]
    assert (strategy["ENABLE_STRATEGY"], strategy["ENABLE_EXECUTION"]) == ("true", "false")
    assert (execution["ENABLE_STRATEGY"], execution["ENABLE_EXECUTION"]) == ("false", "true")
    assert strategy["CONSUMER_NAME"] != execution["CONSUMER_NAME"]
    # Paper trading fills against the trades this process's strategy reads (bootstrap.
    # connect_paper_market): split processes must use an exchange, here the stand-in.
    assert execution["PAPER_TRADING"] == "false"


def test_execution_talks_to_the_standin_with_the_key_pair_it_accepts(compose: dict) -> None:
    services = compose["services"]
    standin = " ".join(services["standin"]["command"])
    port = re.search(r"--port[= ](\d+)", standin)[1]
    assert services["execution"]["environment"]["REST_BASE_URL"] == f"http://standin:{port}"
    assert "${API_KEY" in standin
    assert "${API_SECRET" in standin
    assert services["standin"]["entrypoint"][-2:] == ["-m", "trading_engine_standins.gmo"]


def test_every_engine_variable_is_a_setting_and_each_role_loads(compose: dict) -> None:
    example = {k: v for k, v in dotenv_values(OPS / ".env.example").items() if v not in ("", None)}
    for name, service in _engine_services(compose).items():
        environment = service.get("environment", {})
        unknown = set(environment) - set(Settings.model_fields)
        assert not unknown, f"{name} sets variables the engine does not read: {unknown}"
        if name in ENGINE_ROLES:  # what the container sees: ops/.env, then `environment`
            values = {**example, "API_KEY": "k", "API_SECRET": "s", **environment}
            load_settings(**{k: v for k, v in values.items() if k in Settings.model_fields})


def test_every_engine_command_is_one_the_cli_has(compose: dict) -> None:
    commands = {command.name or command.callback.__name__ for command in cli.registered_commands}
    for name, service in _engine_services(compose).items():
        if "entrypoint" not in service:
            assert service["command"][0] in commands, f"{name}: {service['command']}"


def test_long_running_services_restart_stop_gracefully_and_probe_readiness(
    compose: dict,
) -> None:
    services = compose["services"]
    for name in ENGINE_ROLES:
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert "stop_grace_period" in service
        probe = " ".join(service["healthcheck"]["test"])
        port = service["environment"]["HEALTH_PORT"]
        assert f"127.0.0.1:{port}/readyz" in probe, probe
        needs = service["depends_on"]
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
        assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert services["execution"]["depends_on"]["standin"]["condition"] == "service_healthy"
    for one_shot in ("migrate", "feed"):
        assert services[one_shot]["restart"] == "no"
        assert services[one_shot]["healthcheck"] == {"disable": True}
