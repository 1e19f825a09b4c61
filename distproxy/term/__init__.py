"""term package."""
