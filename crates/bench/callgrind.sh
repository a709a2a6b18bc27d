#!/usr/bin/env bash
# Instructions per signed-in `customer` query, against the ceiling's point lookup, counted by
# valgrind's callgrind: unlike req/s on a shared 2-core machine (±15 % run to run), the count
# moves by only 1 to 4 % run to run (the server's timers fire more often the longer a run takes
# under valgrind), so compare means of interleaved runs.
#
# Each server runs under callgrind twice, answering 200 and then 2,200 sequential keep-alive
# requests; the difference divided by 2,000 is the cost of one request, start-up cancelled out.
# Then the same for `requestPasswordReset` (limits off; half the requests for a customer's
# address, whose mail is written before the count ends).
# Needs valgrind, curl and python3. Usage: crates/bench/callgrind.sh (from the repository root).
# Note: valgrind hides SHA-NI from the CPU feature check, so the JWT's HMAC-SHA256 runs its
# portable code here (~27k instructions); with SHA-NI, as in production, it costs far less.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p latchkey -p latchkey-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export DATABASE_URL="sqlite://$work/db.sqlite?mode=rwc" LATCHKEY_LISTEN=127.0.0.1:18080 RUST_LOG=warn
export LATCHKEY_MAIL_DIR="$work/mail"

wait_for() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$@" && return 0; sleep 0.2; done; return 1; }
gql() { curl -s localhost:18080/graphql -H 'content-type: application/json' -d "$1"; }

# A customer and a token, made by the real server.
target/release/latchkey >/dev/null 2>&1 &
wait_for localhost:18080/healthz
gql '{"query":"mutation { createCustomer(input:{email:\"cg@example.com\", firstname:\"C\", lastname:\"G\", password:\"Callgrind-Pass-2026\"}) { id } }"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createCustomer"]["id"])' >"$work/id"
gql '{"query":"mutation { generateCustomerToken(email:\"cg@example.com\", password:\"Callgrind-Pass-2026\") { token } }"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["generateCustomerToken"]["token"])' >"$work/token"
kill %1; wait %1 2>/dev/null || true

cat >"$work/drive.py" <<'EOF'
import http.client, json, sys
port, n, mode, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = {"Content-Type": "application/json"}
if mode == "server":
    body = {"query": "{ customer { id email } }"}
    headers["Authorization"] = "Bearer " + open(work + "/token").read().strip()
elif mode == "reset":
    body = None
else:
    body = {"query": "query($id: String!) { customer(id: $id) { id email } }",
            "variables": {"id": open(work + "/id").read().strip()}}
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    if mode == "reset":
        # Alternately the customer's address and one nobody has (limits off): the same answer.
        email = "cg@example.com" if i % 2 == 0 else f"nobody-{n}-{i}@example.com"
        body = {"query": "mutation($e: String!) { requestPasswordReset(email: $e) }",
                "variables": {"e": email}}
    c.request("POST", "/graphql", json.dumps(body), headers)
    r = c.getresponse(); data = r.read()
    if mode == "reset":
        assert data == b'{"data":{"requestPasswordReset":true}}', data
    else:
        assert b'"email":"cg@example.com"' in data, data
EOF

# count <mode> <requests>: total instructions of one callgrind run.
count() {
  local mode=$1 n=$2 port
  if [ "$mode" = server ] || [ "$mode" = reset ]; then
    port=18080
    LATCHKEY_MAIL_DIR="$work/mail.$mode.$n" valgrind --tool=callgrind \
      --callgrind-out-file="$work/cg.$mode.$n" target/release/latchkey >/dev/null 2>&1 &
    wait_for "localhost:$port/healthz"
  else
    port=18081
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$mode.$n" \
      target/release/latchkey-bench ceiling-graphql "127.0.0.1:$port" "$DATABASE_URL" >/dev/null 2>&1 &
    wait_for -XPOST "localhost:$port/graphql" -H 'content-type: application/json' -d '{"query":"{ __typename }"}'
  fi
  python3 "$work/drive.py" "$port" "$n" "$mode" "$work"
  if [ "$mode" = reset ]; then
    # Every request's mail written (the worker's work is part of a request's cost), then stop.
    for _ in $(seq 1 1500); do
      [ "$(ls "$work/mail.$mode.$n" 2>/dev/null | wc -l)" -ge $((n / 2)) ] && break
      sleep 0.2
    done
  fi
  kill -TERM %1; wait %1 2>/dev/null || true
  grep -E '^(summary|totals):' "$work/cg.$mode.$n" | head -1 | awk '{print $2}'
}

server=$(( ($(count server 2200) - $(count server 200)) / 2000 ))
# `requestPasswordReset` with the limits off (as the load bench runs it), half for the
# customer's address and half for addresses nobody has; the mail the known half causes is
# written before the count ends.
python3 -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute("UPDATE settings SET reset_request_limit_method = '"'OFF'"' WHERE id = 1"); db.commit()' "$work/db.sqlite"
reset=$(( ($(count reset 2200) - $(count reset 200)) / 2000 ))
ceiling=$(( ($(count ceiling 2200) - $(count ceiling 200)) / 2000 ))
echo "instructions per request: signed-in customer query $server, ceiling point lookup $ceiling"
echo "instructions per request: requestPasswordReset (limits off, half known) $reset, mail included"
python3 -c "print(f'ratio (ceiling / ours, as throughput would be): {$ceiling / $server:.2f}')"
