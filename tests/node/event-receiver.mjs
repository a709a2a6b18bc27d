// A receiver of Latchkey's security events, as one of the store's other services would write
// it: Standard Webhooks at /webhook, verified with the `standardwebhooks` package; Shared
// Signals SETs at /set, verified with `jose` against the server's live JWKS (issuer, audience,
// `typ: secevent+jwt`). Each verified event is printed as one JSON line; anything that does
// not verify is refused (400) and printed as {"rejected": why}.
//
// Env: PORT (0 for any), JWKS_URL, SET_ISSUER, SET_AUDIENCE. The webhook secret is posted to
// /_secret once the subscription exists (it is shown only then). First line: "listening PORT".
import http from "node:http";
import { Webhook } from "standardwebhooks";
import { createRemoteJWKSet, jwtVerify } from "jose";

let webhook = null;
const jwks = process.env.JWKS_URL ? createRemoteJWKSet(new URL(process.env.JWKS_URL)) : null;

function read(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

const server = http.createServer(async (req, res) => {
  const body = await read(req);
  try {
    if (req.url === "/_secret") {
      webhook = new Webhook(body.trim());
      res.writeHead(204).end();
      return;
    }
    if (req.url === "/webhook") {
      if (!webhook) throw new Error("no secret yet");
      const message = webhook.verify(body, req.headers);
      console.log(JSON.stringify({ format: "webhook", id: req.headers["webhook-id"], ...message }));
      res.writeHead(204).end();
      return;
    }
    if (req.url === "/set") {
      if (req.headers["content-type"] !== "application/secevent+jwt") throw new Error("content-type");
      const { payload, protectedHeader } = await jwtVerify(body, jwks, {
        issuer: process.env.SET_ISSUER,
        audience: process.env.SET_AUDIENCE,
        typ: "secevent+jwt",
      });
      console.log(JSON.stringify({ format: "set", kid: protectedHeader.kid, ...payload }));
      res.writeHead(202).end();
      return;
    }
    res.writeHead(404).end();
  } catch (e) {
    console.log(JSON.stringify({ rejected: String(e && e.message ? e.message : e) }));
    res.writeHead(400, { "content-type": "application/json" });
    res.end(JSON.stringify({ err: "invalid_request", description: "does not verify" }));
  }
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
