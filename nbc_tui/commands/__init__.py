"""The CLI subcommands: each module adds its parser(s) and a cmd_* function that returns an exit code."""
