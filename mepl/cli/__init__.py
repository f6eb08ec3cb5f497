"""The ``mepl`` command line: one module per subcommand group, discovered at start."""
