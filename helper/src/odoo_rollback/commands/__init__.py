"""One module per group of commands; each function takes (config, args, output) and returns an exit status."""
