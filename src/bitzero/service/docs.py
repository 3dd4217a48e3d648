"""The interactive API docs at ``/docs``: Swagger UI at a pinned version whose files the browser
checks against their SHA-384 (Subresource Integrity), because the page runs on the same origin as
the API, keyless in single-user mode: a changed CDN file must not run there. (FastAPI's default
loads the floating ``swagger-ui-dist@5`` without a check; ReDoc is not served.)"""

from __future__ import annotations

import html

from fastapi.responses import HTMLResponse

SWAGGER_UI = "5.36.0"
_CDN = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI}"
# sha384 of the files of the swagger-ui-dist 5.36.0 package, base64: what the browser checks.
SCRIPT = (f"{_CDN}/swagger-ui-bundle.js", "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+")
STYLE = (f"{_CDN}/swagger-ui.css", "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc")


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    (script, script_sri), (style, style_sri) = SCRIPT, STYLE
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="stylesheet" href="{style}" integrity="{style_sri}" crossorigin="anonymous"></head>
<body><div id="swagger-ui"></div>
<script src="{script}" integrity="{script_sri}" crossorigin="anonymous"></script>
<script>SwaggerUIBundle({{url: "{html.escape(openapi_url)}", dom_id: "#swagger-ui"}});</script>
</body></html>""")
