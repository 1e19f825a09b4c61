"""Example policies, installed as ``distproxy.example_policies`` (used by ``distproxy demo``)."""
