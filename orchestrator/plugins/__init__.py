"""What a channel or a connector plugs into: `channels` (the `ChannelAdapter` interface,
`Capabilities`, inbound and reply types, the registry fed by the `orchestrator.channels` entry
points) and `connectors` (the `Connector` interface, `Action`, `ConnectorResult`, the registry fed
by `orchestrator.connectors`). Plugins import these and nothing else of the package.
"""
