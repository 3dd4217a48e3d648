"""Container HEALTHCHECK: exit 0 when the service answers GET /healthz with 200, else 1.

The image has no curl; this uses the standard library and the port the service was told to bind.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("BITZERO_PORT", "8000")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # a fixed loopback URL
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"healthcheck {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
