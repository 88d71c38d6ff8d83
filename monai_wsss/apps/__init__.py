"""Reserved for later methods (see the open issues)."""
