#!/usr/bin/env node
// A Node.js app next to wampd, talking WAMP through wampd's sidecar bridge.
//
// No dependencies: Node.js 20 built-ins only. It
//
//   1. serves the two URLs wampd.toml points at: POST /hooks/greetings (the events of the
//      subscription to com.example.greetings) and POST /rpc/add (the procedure
//      com.example.add, which wampd registers on the app's behalf);
//   2. waits until the bridge is ready (GET /v1/ready);
//   3. calls com.example.add through the router -- which routes it to wampd's registration
//      and so back to this app's /rpc/add -- once right and once with bad arguments;
//   4. publishes on com.example.greetings and waits for that very event to come back
//      through wampd's subscription as a webhook;
//
// printing one JSON line per step on stdout, then {"step":"done"} and exit 0. Any failure:
// a message on stderr and exit 1. With --serve it keeps serving afterwards (a long-running
// sidecar demo) until SIGTERM or SIGINT.
//
// Environment:
//   WAMPD_BRIDGE             the bridge: http://127.0.0.1:8091 (default) or unix:/path/to.sock
//   WAMPD_BRIDGE_TOKEN_FILE  a file holding the bridge's bearer token (optional); read
//                            again for every request, so a rotated secret just works
//   APP_HOST, APP_PORT       where this app listens (default 127.0.0.1:8000; it must match
//                            the URLs in wampd.toml; 0 picks a free port)
//   READY_TIMEOUT            seconds to wait for the bridge to be ready (default 60)
//   EVENT_TIMEOUT            seconds to wait for our own event to come back (default 10)
//   BRIDGE_RETRIES           attempts of a request answered 503 (default 5)

import http from "node:http";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

// ---------------------------------------------------------------------------------------
// Configuration

/** Fails the whole run: the message goes to stderr, the exit status is 1. */
class Failure extends Error {}

function envNumber(name, fallback, { min = 0, max = Infinity, integer = false } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
    throw new Failure(`${name}=${JSON.stringify(raw)}: expected ${integer ? "an integer" : "a number"} ${range}`);
  }
  return value;
}

/** Where the bridge is: a unix socket's path, or an http:// URL's host and port. */
function parseBridge(raw) {
  if (raw.startsWith("unix:")) {
    const socketPath = raw.slice("unix:".length);
    if (!socketPath) throw new Failure(`WAMPD_BRIDGE=${raw}: the socket's path is missing`);
    return { socketPath, label: raw };
  }
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new Failure(`WAMPD_BRIDGE=${raw}: expected http://host:port or unix:/path/to.sock`);
  }
  if (url.protocol !== "http:") {
    throw new Failure(`WAMPD_BRIDGE=${raw}: only http:// (or unix:) is supported`);
  }
  // URL keeps IPv6 hosts in brackets; node:http wants them bare.
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(url.port || 80), label: url.origin };
}

function loadConfig(argv) {
  const flags = new Set(argv);
  for (const flag of flags) {
    if (flag !== "--serve") throw new Failure(`unknown argument ${flag} (only --serve)`);
  }
  return {
    bridge: parseBridge(process.env.WAMPD_BRIDGE || "http://127.0.0.1:8091"),
    tokenFile: process.env.WAMPD_BRIDGE_TOKEN_FILE || null,
    appHost: process.env.APP_HOST || "127.0.0.1",
    appPort: envNumber("APP_PORT", 8000, { max: 65535, integer: true }),
    readyTimeoutMs: envNumber("READY_TIMEOUT", 60) * 1000,
    eventTimeoutMs: envNumber("EVENT_TIMEOUT", 10) * 1000,
    retries: envNumber("BRIDGE_RETRIES", 5, { min: 1, integer: true }),
    serve: flags.has("--serve"),
  };
}

// ---------------------------------------------------------------------------------------
// Output: one JSON line per step on stdout; errors on stderr.

function step(name, fields = {}) {
  process.stdout.write(JSON.stringify({ step: name, ...fields }) + "\n");
}

function fail(message) {
  process.stderr.write(`node-bridge: error: ${message}\n`);
}

// ---------------------------------------------------------------------------------------
// The bridge client

/** An error status from the bridge, with its JSON body ({"error", "args", "kwargs"}). */
class BridgeError extends Failure {
  constructor(what, status, body, headers) {
    const uri = body && typeof body === "object" && body.error ? ` ${body.error}` : "";
    const args = body && Array.isArray(body.args) && body.args.length ? `: ${body.args.join("; ")}` : "";
    super(`${what}: HTTP ${status}${uri}${args}`);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

/** Connection errors that mean the request never reached wampd (safe to send again). */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOENT", "EAI_AGAIN", "ENOTFOUND"]);

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), else `fallback`. */
function retryAfterMs(headers, fallbackMs) {
  const raw = headers?.["retry-after"];
  if (!raw) return fallbackMs;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(raw);
  if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  return fallbackMs;
}

class Bridge {
  constructor({ bridge, tokenFile }) {
    this.target = bridge;
    this.tokenFile = tokenFile;
    // Our own agent, so that shutting down can close its kept-alive sockets.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  /** The bearer token, read again for every request (wampd re-reads its file too). */
  token() {
    if (!this.tokenFile) return null;
    let text;
    try {
      text = readFileSync(this.tokenFile, "utf8").trim();
    } catch (err) {
      throw new Failure(`WAMPD_BRIDGE_TOKEN_FILE=${this.tokenFile}: ${err.message}`);
    }
    if (!text) throw new Failure(`WAMPD_BRIDGE_TOKEN_FILE=${this.tokenFile} is empty`);
    return text;
  }

  /**
   * One HTTP request to the bridge: resolves to {status, headers, body} (body parsed as
   * JSON when it is JSON) whatever the status; rejects on a connection error or timeout.
   */
  request(method, path, payload, { timeoutMs = 30000, auth = true } = {}) {
    const data = payload === undefined ? null : Buffer.from(JSON.stringify(payload));
    const headers = { accept: "application/json" };
    if (data) {
      headers["content-type"] = "application/json";
      headers["content-length"] = data.length;
    }
    const token = auth ? this.token() : null;
    if (token) headers.authorization = `Bearer ${token}`;
    const where = this.target.socketPath
      ? { socketPath: this.target.socketPath }
      : { host: this.target.host, port: this.target.port };

    return new Promise((resolve, reject) => {
      const req = http.request({ ...where, method, path, headers, agent: this.agent }, (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            // not JSON (a proxy's error page?): keep the text for the message
          }
          resolve({ status: res.statusCode, headers: res.headers, body });
        });
      });
      // wampd answers a call within its own call_timeout (504); this is only a backstop.
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(data);
    });
  }

  /** Polls GET /v1/ready until it says 200, honouring Retry-After, for at most `timeoutMs`. */
  async waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let last = "no answer yet";
    for (let attempt = 1; ; attempt++) {
      let delayMs = 500; // wampd not listening yet (it is starting): poll again soon
      try {
        const res = await this.request("GET", "/v1/ready", undefined, {
          timeoutMs: Math.max(1000, Math.min(5000, deadline - Date.now())),
          auth: false, // /v1/ready needs no token
        });
        if (res.status === 200 && res.body?.ready === true) return attempt;
        last = `HTTP ${res.status} ${JSON.stringify(res.body)}`;
        delayMs = retryAfterMs(res.headers, 500);
      } catch (err) {
        if (err instanceof Failure) throw err;
        last = err.code ? `${err.code} ${err.message}` : err.message;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Failure(
          `the bridge at ${this.target.label} was not ready within ${timeoutMs / 1000} s (last: ${last})`,
        );
      }
      await sleep(Math.min(Math.max(delayMs, 100), 5000, remaining));
    }
  }

  /**
   * POSTs `payload` to `path`; 200 resolves to the JSON body. A 503 (the bridge session is
   * not joined: wampd is starting, or the router is down) is sent again after Retry-After,
   * up to `retries` attempts in all; so is a request that could not connect at all. Every
   * other status rejects with a BridgeError.
   *
   * Resending a publication after a 503 is at-least-once: a 503 can also mean the session
   * was lost *during* the request, after the router may have received it.
   */
  async post(path, payload, retries, what) {
    for (let attempt = 1; ; attempt++) {
      let res;
      try {
        res = await this.request("POST", path, payload);
      } catch (err) {
        if (err instanceof Failure) throw err;
        if (!NOT_SENT.has(err.code) || attempt >= retries) {
          throw new Failure(`${what}: ${this.target.label}: ${err.code ?? ""} ${err.message}`.trim());
        }
        await sleep(500);
        continue;
      }
      if (res.status === 200) return res.body;
      if (res.status === 401) {
        throw new BridgeError(`${what} (check WAMPD_BRIDGE_TOKEN_FILE)`, 401, res.body, res.headers);
      }
      if (res.status !== 503 || attempt >= retries) {
        const note = res.status === 503 ? ` (after ${attempt} attempts)` : "";
        throw new BridgeError(what + note, res.status, res.body, res.headers);
      }
      const delayMs = Math.min(retryAfterMs(res.headers, 1000), 10000);
      step("retry", { what, status: 503, attempt, delay_ms: Math.round(delayMs) });
      await sleep(delayMs);
    }
  }

  /** Calls a WAMP procedure: resolves to {args, kwargs}. */
  call(procedure, args = [], kwargs = {}, options = {}, retries = 5) {
    return this.post("/v1/call", { procedure, args, kwargs, options }, retries, `call ${procedure}`);
  }

  /** Publishes a WAMP event: resolves to the publication's id. */
  async publish(topic, args = [], kwargs = {}, options = {}, retries = 5) {
    const body = await this.post("/v1/publish", { topic, args, kwargs, options }, retries, `publish ${topic}`);
    if (!Number.isSafeInteger(body?.id)) {
      throw new Failure(`publish ${topic}: expected {"id": N}, got ${JSON.stringify(body)}`);
    }
    return body.id;
  }

  close() {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------
// The app's own HTTP server: what wampd delivers to

const MAX_BODY = 1024 * 1024; // bytes; wampd's own default max_body

/** The greetings received, by publication id (wampd may deliver one more than once). */
class Inbox {
  constructor(limit = 1000) {
    this.limit = limit;
    this.events = new Map();
    this.waiters = new Map();
    this.onEvent = null; // set in --serve mode, to print every event
  }

  /** Records an event; returns false for a redelivery of one already recorded. */
  add(event) {
    if (this.events.has(event.publication)) return false;
    this.events.set(event.publication, event);
    if (this.events.size > this.limit) {
      this.events.delete(this.events.keys().next().value); // the oldest
    }
    this.waiters.get(event.publication)?.(event);
    this.waiters.delete(event.publication);
    this.onEvent?.(event);
    return true;
  }

  /**
   * The event of publication `id`. It may have arrived already: the router can deliver
   * the event to wampd's subscription before it acknowledges the publication.
   */
  waitFor(id, timeoutMs) {
    const seen = this.events.get(id);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Failure(`publication ${id} did not come back as a webhook within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiters.set(id, (event) => {
        clearTimeout(timer);
        resolve(event);
      });
    });
  }
}

/** An HTTP error of our own, answered as wampd expects: {"error": uri, "args": [...]}. */
class HttpError extends Error {
  constructor(status, error, message) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        req.removeAllListeners("data").removeAllListeners("end");
        req.resume(); // discard the rest; the 413 is answered with the connection closed
        reject(new HttpError(413, "com.example.body_too_large", `body over ${MAX_BODY} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", reject);
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (err) {
        reject(new HttpError(400, "com.example.invalid_json", `body is not JSON: ${err.message}`));
      }
    });
  });
}

function send(res, status, body) {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const data = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(data),
  });
  res.end(data);
}

/** POST /hooks/greetings: one event of com.example.greetings. 204 = delivered. */
function greetingsHook(inbox) {
  return (body) => {
    if (
      !body ||
      typeof body !== "object" ||
      typeof body.topic !== "string" ||
      !Number.isSafeInteger(body.publication)
    ) {
      // a 4xx (other than 408/429) is not retried by wampd: right for a malformed event
      throw new HttpError(400, "com.example.invalid_event", "expected {topic, publication, ...}");
    }
    inbox.add({
      topic: body.topic,
      args: Array.isArray(body.args) ? body.args : [],
      kwargs: body.kwargs && typeof body.kwargs === "object" ? body.kwargs : {},
      publication: body.publication,
      details: body.details ?? {},
      delivery_attempt: body.delivery_attempt ?? 1,
    });
    return { status: 204 };
  };
}

/** POST /rpc/add: the procedure com.example.add. */
function addProcedure(body) {
  const args = body?.args;
  if (
    !Array.isArray(args) ||
    args.length !== 2 ||
    !args.every((x) => typeof x === "number" && Number.isFinite(x))
  ) {
    // Not 2xx: wampd turns it into the WAMP error com.example.invalid_argument; a caller
    // through the bridge sees it as a 502 (an application error of the callee).
    throw new HttpError(400, "com.example.invalid_argument", "add takes two numbers");
  }
  return { status: 200, body: { args: [args[0] + args[1]] } };
}

function createServer(inbox) {
  const routes = {
    "/hooks/greetings": greetingsHook(inbox),
    "/rpc/add": addProcedure,
  };
  return http.createServer(async (req, res) => {
    try {
      const path = new URL(req.url, "http://app").pathname;
      const route = routes[path];
      if (!route) throw new HttpError(404, "com.example.no_such_route", `no route ${path}`);
      if (req.method !== "POST") {
        res.setHeader("allow", "POST");
        throw new HttpError(405, "com.example.method_not_allowed", "use POST");
      }
      const { status, body } = route(await readJson(req));
      send(res, status, body);
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.status === 413) res.setHeader("connection", "close");
        send(res, err.status, { error: err.error, args: [err.message] });
      } else {
        fail(`handling ${req.method} ${req.url}: ${err.stack ?? err}`);
        send(res, 500, { error: "com.example.internal_error", args: [String(err.message ?? err)] });
      }
    }
  });
}

function listen(server, host, port) {
  return new Promise((resolve, reject) => {
    const failed = (err) => reject(new Failure(`cannot listen on ${host}:${port}: ${err.message}`));
    server.once("error", failed);
    server.listen(port, host, () => {
      server.off("error", failed);
      resolve(server.address());
    });
  });
}

/** Stops accepting, lets requests in flight finish for up to `graceMs`, then cuts the rest. */
function closeServer(server, graceMs = 2000) {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

// ---------------------------------------------------------------------------------------
// The steps

async function run(config, bridge, inbox, server) {
  const address = await listen(server, config.appHost, config.appPort);
  step("listening", { host: address.address, port: address.port });

  const attempts = await bridge.waitReady(config.readyTimeoutMs);
  step("ready", { bridge: bridge.target.label, attempts });

  // A call that goes router -> wampd's registration -> this app's /rpc/add and back.
  const sum = await bridge.call("com.example.add", [2, 3], {}, {}, config.retries);
  if (!Array.isArray(sum?.args) || sum.args.length !== 1 || sum.args[0] !== 5) {
    throw new Failure(`call com.example.add [2, 3]: expected {"args": [5]}, got ${JSON.stringify(sum)}`);
  }
  step("call", { procedure: "com.example.add", args: [2, 3], result: sum.args[0] });

  // The same with bad arguments: the app's 400 comes back as the callee's WAMP error (502).
  try {
    const got = await bridge.call("com.example.add", ["two", 3], {}, {}, config.retries);
    throw new Failure(`call com.example.add ["two", 3]: expected an error, got ${JSON.stringify(got)}`);
  } catch (err) {
    if (!(err instanceof BridgeError)) throw err;
    if (err.status !== 502 || err.body?.error !== "com.example.invalid_argument") {
      throw new Failure(`call com.example.add ["two", 3]: expected 502 com.example.invalid_argument, got ${err.message}`);
    }
    step("call_error", { procedure: "com.example.add", status: err.status, error: err.body.error, args: err.body.args ?? [] });
  }

  // Publish, and receive our own publication through wampd's subscription: WAMP leaves a
  // publisher out of its own events unless exclude_me is false.
  const greeting = ["hello from node"];
  const id = await bridge.publish("com.example.greetings", greeting, {}, { exclude_me: false }, config.retries);
  step("publish", { topic: "com.example.greetings", id });

  const event = await inbox.waitFor(id, config.eventTimeoutMs);
  if (event.topic !== "com.example.greetings" || JSON.stringify(event.args) !== JSON.stringify(greeting)) {
    throw new Failure(`webhook for publication ${id}: unexpected event ${JSON.stringify(event)}`);
  }
  step("webhook", { topic: event.topic, publication: event.publication, args: event.args, delivery_attempt: event.delivery_attempt });

  step("done");
}

async function main() {
  let config, bridge;
  try {
    config = loadConfig(process.argv.slice(2));
    bridge = new Bridge(config);
    bridge.token(); // a token file that cannot be read: say so now, not after the ready wait
  } catch (err) {
    fail(err.message);
    process.exit(1);
  }

  const inbox = new Inbox();
  const server = createServer(inbox);
  let done = false;
  let stopping = false;

  const shutdown = async (code) => {
    stopping = true;
    await closeServer(server);
    bridge.close();
    process.exitCode = code;
  };

  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      if (stopping) return;
      step("stopping", { signal });
      if (!done && !config.serve) fail(`interrupted by ${signal} before the steps completed`);
      // In --serve mode, or once the steps are done, a signal is the normal way to stop.
      // Exit explicitly: steps still running (a ready poll, say) must not keep us alive.
      shutdown(done || config.serve ? 0 : 1).then(() => process.exit());
    });
  }

  try {
    await run(config, bridge, inbox, server);
    done = true;
  } catch (err) {
    if (stopping) return; // a signal came first: its handler decides the status
    fail(err instanceof Failure ? err.message : err.stack ?? String(err));
    await shutdown(1);
    return;
  }

  if (config.serve && !stopping) {
    // A long-running sidecar: keep serving the hook and the procedure, print each event.
    inbox.onEvent = (event) => step("event", { topic: event.topic, publication: event.publication, args: event.args });
    step("serving", { note: "SIGTERM or SIGINT to stop" });
    return;
  }
  if (!stopping) await shutdown(0);
}

main();
