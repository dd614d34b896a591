"""The ad decisioning API: `create_app(settings)` (app.py) builds the FastAPI service, `cli.register` adds
`sidecast ads serve`, `tokens` signs and checks player tokens, `decide` holds the pure decision rules.

Kept import-light on purpose: `from sidecast.ads.api import tokens` must not pull FastAPI in (the core uses it).
"""
