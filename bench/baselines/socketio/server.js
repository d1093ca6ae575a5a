#!/usr/bin/env node
// Socket.IO + Redis adapter relay: the Node baseline for kefu benchmarks B1 (relay) and B2 (idle).
//
// Semantics (identical to bench/baselines/bare_relay.py):
//   connect with query user=<id>  -> the socket joins room "u:<id>"
//   event "m" with {"to": "<id>", ...}  -> io.to("u:<to>").emit("m", payload)
// The Redis adapter publishes every broadcast to Redis (for other nodes) and delivers to local
// sockets directly, so on a single node Redis is off the delivery path.
//
// Usage: node server.js --port P --redis redis://127.0.0.1:6379 [--host 127.0.0.1] [--workers N]
"use strict";

const cluster = require("node:cluster");
const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    workers: { type: "string", default: "1" },
  },
});
const port = Number(args.port);
const workers = Math.max(1, Number(args.workers));

async function serve() {
  const pub = createClient({ url: args.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => console.error("redis:", err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    // WebSocket only: load generators speak raw Engine.IO v4 over WebSocket, and without
    // long-polling the cluster mode needs no sticky sessions.
    transports: ["websocket"],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
  });

  io.on("connection", (socket) => {
    const user = socket.handshake.query.user;
    if (typeof user !== "string" || user === "") {
      socket.disconnect(true);
      return;
    }
    socket.join(`u:${user}`);
    socket.on("m", (msg) => {
      if (msg && typeof msg.to === "string") io.to(`u:${msg.to}`).emit("m", msg);
    });
  });

  httpServer.listen({ port, host: args.host, backlog: 4096 });
  const shutdown = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

if (workers > 1 && cluster.isPrimary) {
  // Workers share the listening port; the primary hands out connections round-robin.
  for (let i = 0; i < workers; i++) cluster.fork();
  let stopping = false;
  cluster.on("exit", (w, code) => {
    if (!stopping) {
      console.error(`worker ${w.process.pid} exited (${code}); stopping`);
      stopping = true;
      for (const other of Object.values(cluster.workers)) other.kill("SIGTERM");
      process.exitCode = 1;
    }
  });
  const stopAll = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill("SIGTERM");
  };
  process.on("SIGTERM", stopAll);
  process.on("SIGINT", stopAll);
} else {
  serve().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
