"""The `orchestrator` command: `main` parses the command line (validate, diagram, schema, chat,
test, serve...); `chat` is the terminal conversation with a flow, run as the server runs it;
`flowtest` runs YAML conversation tests.
"""
