"""The flow language: what an owner writes, and how it is read and checked.

`schema` declares every key as msgspec Structs; `loader` turns YAML into a `Flow` with the line
and column of every value (within size, alias and depth limits); `validate` finds what would go
wrong at run time (`assigned`: variables set on every path; `channel_limits`: what each channel
can show; `patterns`: owner regexes on RE2) and reports it at `file:line:col` with a fix;
`templates` is the sandboxed jinja2 the texts use; `jsonschema` and `graph` (with
`graph_layout`) describe a flow for editors and people. Nothing here talks to the network.
"""
