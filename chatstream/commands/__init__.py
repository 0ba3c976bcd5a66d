"""The pieces of the `chatstream` command line beside `chatstream/cli.py`: the config file, the
defaults in `--help`, logging, argument value types, the `generate`, `warmup` and remote
`chat --url` subcommands."""
