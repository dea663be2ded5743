"""The one supervised runner: every subprocess an SST starts goes through here. (The manual
`galera-sst joiner`/`donor` runs start the SST script itself as mariadbd would, reading its
stdout, and the test lab starts mariadbd nodes: both play mariadbd's part.)"""
