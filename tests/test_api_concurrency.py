"""The API lets at most as many requests in at once as a worker's connection pool holds; the
others wait their turn in arrival order (api/app.py: ConcurrencyLimit)."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from api.app import ConcurrencyLimit


def test_requests_beyond_the_limit_wait_and_are_served_in_arrival_order() -> None:
    inside = 0
    most_inside = 0
    served: list[int] = []

    async def slow_app(scope: Scope, _receive: Receive, _send: Send) -> None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        await asyncio.sleep(0.01)
        served.append(scope["n"])
        inside -= 1

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    async def send(_message: object) -> None:
        return None

    async def main() -> None:
        limited = ConcurrencyLimit(slow_app, limit=3)
        await asyncio.gather(*(limited({"type": "http", "n": n}, receive, send) for n in range(12)))

    asyncio.run(main())
    assert most_inside == 3
    assert served == list(range(12))  # first come, first served


def test_lifespan_and_other_scopes_pass_straight_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, _receive: Receive, _send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> dict[str, object]:
        return {}

    async def send(_message: object) -> None:
        return None

    limited = ConcurrencyLimit(app, limit=1)
    asyncio.run(limited({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]
