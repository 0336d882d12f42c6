"""POST a JSON batch to an HTTP push connector: ``python -m samples.push URL TOKEN FILE [CA]``.

``CA``: the certificate authority that signed an HTTPS endpoint's certificate.

What a department system does; prints the status and the answer. Exit 0 on 202, 1 otherwise.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def push(
    url: str, token: str, body: bytes, cafile: str | None = None, request_id: str | None = None
) -> tuple[int, str]:
    """POST ``body``; a new ``X-Request-Id`` unless one is given (a resend after a failure may
    reuse its id: only an accepted request takes it). ``cafile`` verifies an HTTPS endpoint."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("X-Request-Id", request_id or uuid.uuid4().hex)
    request.add_header("X-Request-Time", f"{time.time():.3f}")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    url, token, file = sys.argv[1:4]
    cafile = sys.argv[4] if len(sys.argv) == 5 else None
    status, answer = push(url, token, Path(file).read_bytes(), cafile)
    pretty = json.dumps(json.loads(answer), ensure_ascii=False, indent=1)
    print(f"{file}: HTTP {status}\n{pretty}")
    return 0 if status == 202 else 1


if __name__ == "__main__":
    sys.exit(main())
