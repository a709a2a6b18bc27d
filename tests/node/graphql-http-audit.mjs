// The GraphQL-over-HTTP audit of graphql-http (its serverAudits) against a running Latchkey.
// Usage: node graphql-http-audit.mjs URL — prints every result as JSON lines; exits 1 if any
// MUST or SHOULD audit did not pass.
import { auditServer } from "graphql-http";

const [url] = process.argv.slice(2);
const results = await auditServer({ url });
let failed = 0;
for (const r of results) {
  const must = r.name.startsWith("MUST") || r.name.startsWith("SHOULD");
  if (r.status !== "ok" && must) failed += 1;
  console.log(JSON.stringify({ id: r.id, name: r.name, status: r.status, reason: r.reason }));
}
process.exit(failed === 0 ? 0 : 1);
