"""POST a JSON batch to an HTTP push connector: ``python -m samples.push URL TOKEN FILE``.

What a department system does; prints the status and the answer. Exit 0 on 202, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path


def push(url: str, token: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, token, file = sys.argv[1:]
    status, answer = push(url, token, Path(file).read_bytes())
    pretty = json.dumps(json.loads(answer), ensure_ascii=False, indent=1)
    print(f"{file}: HTTP {status}\n{pretty}")
    return 0 if status == 202 else 1


if __name__ == "__main__":
    sys.exit(main())
