"""The one supervised runner: every subprocess galera-sst starts goes through here."""
