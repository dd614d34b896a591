"""One APIRouter per resource of the ads API; app.py mounts them in this order (the player-facing routes
first: they are the hot ones, matched before the catalog's):

health (GET /healthz) · decisions (/v1/decisions) · asset_lists (/v1/asset-list) · beacons (/v1/beacons) ·
tokens (/v1/tokens) · creatives, campaigns, sources (catalog CRUD, built by catalog.crud_router) ·
media (creative uploads and their public files) · sessions (the optional SSAI session router).

Each router takes what it needs through the dependencies in ads/api/deps.py; none holds state of its own.
"""
