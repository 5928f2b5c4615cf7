"""The node's commands, one module per group; each ``cmd_*`` takes the parsed args."""
