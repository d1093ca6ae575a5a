"""kefu clients: the Python async client, the load-test bots, and the browser apps (web/)."""
