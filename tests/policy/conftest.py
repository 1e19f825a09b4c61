"""Shared helpers for the policy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distproxy.policy.evaluator import PolicyEngine
from distproxy.policy.loader import load_policy, load_policy_text
from distproxy.policy.model import Decision
from distproxy.policy.samples import Sample, build_message

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"

HEADER = """\
policy: t
to_peer:
  default: accept
"""


def policy_from(text: str, path: str = "t.yaml"):
    return load_policy_text(text, path)


def engine_from(text: str) -> PolicyEngine:
    return PolicyEngine(policy_from(text))


def decide(engine: PolicyEngine, **kw: Any) -> Decision:
    s = Sample(**kw)
    return engine.evaluate(build_message(s), s.direction, s.context())


@pytest.fixture(scope="session")
def unequal() -> PolicyEngine:
    return PolicyEngine(load_policy(POLICIES / "unequal-trust.yaml"))
