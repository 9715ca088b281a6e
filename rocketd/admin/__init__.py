"""The admin web UI at `/admin`: static files served by rocketd itself (`static/`), no build step.

The UI is a client of the public API only (the same routes and tokens a REST client uses); this
package serves files and headers, and holds no API route of its own. `docs/admin-ui.md` explains
the front-end choice and how the UI authenticates.
"""
