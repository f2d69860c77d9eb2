// A broadcast SSE server the usual Node way: node:http + better-sse, one
// channel that every session joins.
//
// GET /stream: text/event-stream; every published message is broadcast with
// better-sse's default serializer (JSON.stringify), so `data:` is a JSON string.
// POST /publish: JSON {"message": "..."}. GET /healthz: 200.
//
// Run: node bench/peers/better_sse_server.js PORT  (better-sse from NODE_PATH)
"use strict";

const http = require("node:http");
const { createSession, createChannel } = require("better-sse");

const port = Number(process.argv[2] || 3002);
const channel = createChannel();

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/stream") {
    const session = await createSession(req, res, { keepAlive: 15000 });
    channel.register(session);
    return;
  }
  if (req.method === "POST" && url.pathname === "/publish") {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    let message;
    try {
      message = JSON.parse(Buffer.concat(chunks).toString("utf8")).message;
    } catch {
      message = undefined;
    }
    if (typeof message !== "string" || message === "") {
      res.writeHead(400, { "content-type": "application/json" });
      res.end('{"error":"invalid_json"}');
      return;
    }
    channel.broadcast(message);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ receivers: channel.sessionCount }));
    return;
  }
  if (url.pathname === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  res.writeHead(404);
  res.end();
});

server.keepAliveTimeout = 120000;
server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${port}`);
});
process.on("SIGTERM", () => process.exit(0));
