"""A broadcast SSE server the usual Python way: Starlette + sse-starlette on
uvicorn, one asyncio.Queue per subscriber.

GET /stream: text/event-stream, every published message as `data:`.
POST /publish: JSON {"message": "..."}; the message goes to every subscriber
(a subscriber more than 1024 messages behind skips what does not fit).
GET /healthz: 200.

Run: uvicorn --app-dir bench/peers starlette_app:app --host 127.0.0.1 --port PORT
"""

import asyncio

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

QUEUE_SIZE = 1024
subscribers: set[asyncio.Queue] = set()


async def stream(request):
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
    subscribers.add(queue)

    async def events():
        try:
            while True:
                yield {"data": await queue.get()}
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(events(), ping=15)


async def publish(request):
    body = await request.json()
    message = body.get("message")
    if not isinstance(message, str) or not message:
        return JSONResponse({"error": "empty_message"}, status_code=400)
    for queue in list(subscribers):
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:
            pass
    return JSONResponse({"receivers": len(subscribers)})


async def healthz(request):
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/stream", stream),
        Route("/publish", publish, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
