"""A client of a running diff proxy's API (`/api/1` on its http port), for the report
command, the demo, the benchmark and the tests. Standard library only, so the report
command needs nothing the proxy image does not have.

    api = ApiClient("http://127.0.0.1:8888")
    api.info(); api.overview(); api.endpoints()
    api.stats("GET /json"); api.results("GET /json", "body.slideshow.author")
    api.clear()

Every failure is an `ApiError` with a one-line message (unreachable, timed out, an HTTP
error with the proxy's own `error` text, an answer that is not JSON).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

API_PREFIX = "/api/1"


class ApiError(Exception):
    """The API could not be used; the message is one line. `status` is the HTTP status
    when the proxy answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def enc(name: str) -> str:
    """encodeURIComponent: what a browser does with an endpoint name or field path."""
    return quote(name, safe="")


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 5.0,
                 user_agent: str = "diffproxy-client") -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent

    def request(self, method: str, path: str) -> Any:
        """`path` below /api/1 ("info", "endpoints/GET%20%2Fa/stats"); the parsed JSON answer."""
        url = f"{self.base}{API_PREFIX}/{path.lstrip('/')}"
        req = urllib.request.Request(url, method=method, headers={
            "Accept": "application/json", "User-Agent": self.user_agent})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = json.loads(exc.read()).get("error", "")
            except (ValueError, AttributeError, OSError):
                pass
            raise ApiError(f"{url} answered {exc.code}{': ' + detail if detail else ''}",
                           exc.code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ApiError(f"the diff proxy at {self.base} did not answer within "
                               f"{self.timeout:g}s") from None
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise ApiError(f"cannot reach the diff proxy at {self.base}: {text}") from None
        except TimeoutError:
            raise ApiError(f"the diff proxy at {self.base} did not answer within "
                           f"{self.timeout:g}s") from None
        except OSError as exc:
            raise ApiError(f"cannot reach the diff proxy at {self.base}: "
                           f"{exc.strerror or exc}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(f"{url} did not return JSON (is this a diff proxy's http port?)") from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def info(self) -> Any:
        return self.get("info")

    def overview(self) -> Any:
        return self.get("overview")

    def endpoints(self) -> Any:
        return self.get("endpoints")

    def total(self) -> int:
        """Requests compared so far, over every endpoint."""
        return sum(e.get("total", 0) for e in self.endpoints().values())

    def stats(self, endpoint: str, exclude_noise: bool = False,
              include_weights: bool = False) -> Any:
        # explicit: the API's default is Diffy's (exclude_noise=true)
        query = f"?exclude_noise={str(exclude_noise).lower()}"
        if include_weights:
            query += "&include_weights=true"
        return self.get(f"endpoints/{enc(endpoint)}/stats{query}")

    def results(self, endpoint: str, field: str, include_request: bool = True) -> Any:
        query = "?include_request=true" if include_request else ""
        return self.get(f"endpoints/{enc(endpoint)}/fields/{enc(field)}/results{query}")

    def result(self, result_id: str) -> Any:
        return self.get(f"results/{enc(result_id)}")

    def clear(self) -> Any:
        return self.request("POST", "clear")
