"""distproxy: a policy-filtering man-in-the-middle for Erlang distribution."""

__version__ = "0.1.0"
