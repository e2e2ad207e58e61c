"""What a channel or a connector plugs into: `base` (typed plugin settings with secrets, the one
registry, entry-point discovery refusing duplicate names), `channels` (the `ChannelAdapter` base
class, `Capabilities`, inbound and reply types), `connectors` (the `Connector` base class,
`Action`, `ConnectorResult`) and `listing` (`orchestrator plugins`). Plugins import these,
`orchestrator.errors`, `orchestrator.model`, `orchestrator.engine.render` and, in their tests,
`orchestrator.testing`.
"""
