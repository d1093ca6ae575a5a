"""kefu server: Starlette app, WebSocket gateway, and the domain services over Redis."""
