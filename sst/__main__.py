"""`python -m sst ...` is `galera-sst ...`."""

from sst.cli import galera_sst

galera_sst()
