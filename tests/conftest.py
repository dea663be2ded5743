"""The unit and process tiers' fixtures (defined in testsupport/process.py)."""

from testsupport.process import fakebin, joiner_dir, node_dir, parent

__all__ = ["fakebin", "joiner_dir", "node_dir", "parent"]
