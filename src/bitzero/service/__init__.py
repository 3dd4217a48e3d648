"""The companion service: FastAPI app, routes, auth, storage and the web page."""
