"""The shape of the code, read from its syntax trees (nothing is imported or run):

- the core (``anbu/`` outside the composition root ``anbu/app/``) imports nothing from the
  outer packages ``ivr``, ``scheduler``, ``escalation``;
- no runtime module outside the root builds a process's adapters by hand: constructing an
  AMI client, dialer, AGI server, dispatcher, outbox worker, escalation service, SMS sender,
  database engine or the API app happens in ``anbu/app/`` (or in the adapter's own module,
  e.g. a ``from_settings`` classmethod). Tests and benchmarks are free to wire by hand.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTER = ("ivr", "scheduler", "escalation")
RUNTIME_PACKAGES = ("anbu", "ivr", "scheduler", "escalation")
COMPOSITION_ROOT = "anbu.app"

# What only the composition root may build: name -> the module that defines it.
BUILT_BY_ROOT = {
    "AmiClient": "ivr.ami",
    "ami_client_from_settings": "ivr.ami",
    "AmiDialer": "ivr.dialer",
    "CallRegistry": "ivr.dialer",
    "AgiServer": "ivr.agi",
    "CheckinFlow": "ivr.flow",
    "SpeechListener": "ivr.listen",
    "VoskRecognizer": "ivr.speech",
    "Dispatcher": "scheduler.dispatcher",
    "AmiChannelProbe": "scheduler.dispatcher",
    "build_scheduler": "scheduler.service",
    "OutboxWorker": "escalation.outbox",
    "EscalationService": "escalation.service",
    "EscalationRuntime": "escalation.service",
    "sender_from_settings": "escalation.providers",
    "KannelSmsSender": "escalation.providers",
    "SolapiSmsSender": "escalation.providers",
    "WebhookSmsSender": "escalation.providers",
    "MqttSignalSubscriber": "anbu.risk.mqtt",
    "create_app": "anbu.api.app",
    "make_engine": "anbu.db.session",
}
# Alembic's env.py is run by Alembic (``anbu db upgrade`` hands it an engine's URL).
WIRING_EXEMPT = {"anbu.db.migrations.env"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def runtime_modules() -> list[tuple[str, ast.Module]]:
    out = []
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((module_name(path), ast.parse(path.read_text(), str(path))))
    return out


def in_root(module: str) -> bool:
    return module == COMPOSITION_ROOT or module.startswith(COMPOSITION_ROOT + ".")


def imported_modules(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """Every module an import statement (at any depth) or importlib call names."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


Rule = Callable[[list[tuple[str, ast.Module]]], list[str]]


def core_violations(modules: list[tuple[str, ast.Module]]) -> list[str]:
    bad = []
    for module, tree in modules:
        if not module.startswith("anbu") or in_root(module):
            continue
        for line, name in imported_modules(tree, module):
            if name.split(".")[0] in OUTER:
                bad.append(f"{module}:{line} imports {name}")
    return bad


def wiring_violations(modules: list[tuple[str, ast.Module]]) -> list[str]:
    bad = []
    for module, tree in modules:
        if in_root(module) or module in WIRING_EXEMPT:
            continue
        # Which defining module each local name (or module alias) stands for.
        names: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name):
                target = names.get(func.id, f"{module}.{func.id}")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                base = names.get(func.value.id)
                if base is None:
                    continue
                target = f"{base}.{func.attr}"
            else:
                continue
            where, _, name = target.rpartition(".")
            if BUILT_BY_ROOT.get(name) == where and where != module:
                bad.append(f"{module}:{node.lineno} builds {name} by hand")
    return bad


def test_given_the_tree_then_the_core_imports_no_outer_package() -> None:
    assert core_violations(runtime_modules()) == []


def test_given_the_tree_then_every_process_is_wired_through_the_root() -> None:
    assert wiring_violations(runtime_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("anbu.api.routes", "from scheduler.claims import claim_due\n", core_violations),
        ("anbu.db.models", "def f():\n    import escalation.dlr\n", core_violations),
        ("anbu.cli", "import importlib\nimportlib.import_module('ivr.tts')\n", core_violations),
        ("anbu.services.x", "from ...ivr import agi\n", core_violations),
        (
            "scheduler.worker",
            "from ivr.ami import AmiClient\nami = AmiClient('h', 1, 'u', 's')\n",
            wiring_violations,
        ),
        (
            "escalation.worker",
            "from escalation import outbox\nw = outbox.OutboxWorker(s, [])\n",
            wiring_violations,
        ),
        (
            "anbu.cli",
            "from anbu.db.session import make_engine\nengine = make_engine(url)\n",
            wiring_violations,
        ),
    ],
)
def test_given_a_forbidden_line_when_checking_then_it_is_found(
    module: str, source: str, rule: Rule
) -> None:
    # The rules can fail: each planted line is reported.
    assert rule([(module, ast.parse(source))]) != []


def test_given_the_root_when_it_wires_then_that_is_allowed() -> None:
    tree = ast.parse(
        "from ivr.ami import AmiClient\nfrom scheduler import x\nAmiClient('h', 1, 'u', 's')\n"
    )
    assert core_violations([("anbu.app.parts", tree)]) == []
    assert wiring_violations([("anbu.app.parts", tree)]) == []
