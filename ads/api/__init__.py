"""The ad decisioning API: `create_app(settings)` (app.py) mounts one router per resource (routes/) on the
service (service.py), `cli.register` adds `sidecast ads serve`, `tokens` signs and checks player tokens,
`decide` holds the pure decision rules. Outbound fetching is ads/fetch.py, one policy for every caller.

Kept import-light on purpose: `from sidecast.ads.api import tokens` must not pull FastAPI in (the core uses it).
"""
