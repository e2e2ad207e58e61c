"""The HTTP side: `app.create_app` builds the litestar app (the raw-ASGI webhook gateway,
`/health`, `/metrics`); `operations` mounts the admin API (`admin`, its response types in
`admin_models`) and starts the background jobs.
"""
