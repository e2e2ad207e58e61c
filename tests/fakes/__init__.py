"""Local fake provider servers for tests: real client libraries, pointed at 127.0.0.1."""
