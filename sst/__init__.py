"""galera-sst: State Snapshot Transfer scripts for MariaDB Galera."""

__version__ = "0.1.0"
