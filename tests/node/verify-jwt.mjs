// Verifies an access token as another of the store's services would: jose fetches the JWKS
// from Latchkey and checks signature, issuer, audience and expiry.
// Usage: node verify-jwt.mjs JWKS_URL AUDIENCE TOKEN — prints {payload, header} as JSON, or
// {error} and exits 1.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, audience, token] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: "latchkey",
    audience,
    algorithms: ["EdDSA"],
  });
  console.log(JSON.stringify({ payload, header: protectedHeader }));
} catch (e) {
  console.log(JSON.stringify({ error: e.code ?? String(e) }));
  process.exit(1);
}
