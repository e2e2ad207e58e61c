"""Channel adapters shipped with the product, one module per provider.

- `twilio_voice.TwilioVoiceChannel` ("twilio_voice"): calls; speech + keypad, TwiML replies
- `twilio_sms.TwilioSmsChannel` ("twilio_sms"): SMS/MMS and WhatsApp-over-Twilio; TwiML replies
- `whatsapp.WhatsAppChannel` ("whatsapp"): Meta's WhatsApp Cloud API; replies sent via heyoo

They derive from `orchestrator.plugins.channels.ChannelAdapter` and are found through the
`orchestrator.channels` entry-point group; each is built by `from_settings(config)` from its
typed settings (`_twilio.TwilioSettings`, `whatsapp.WhatsAppSettings`) and raises ConfigError
naming a missing key. Each declares `routes` (method, path) the server mounts, and
`is_configured(config)` (False: the server leaves it out). None imports a web framework.
"""
