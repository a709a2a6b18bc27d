#!/usr/bin/env bash
# The signed-in read side by side, in one run on one PostgreSQL: Vendure 3.7.3's `activeCustomer`
# (installed from the npm registry into a scratch folder) and Latchkey's `customer` with the
# session cache off (the old path: one indexed join per request) and on. wrk, the same
# connections and duration for each; every answer is checked for errors first.
#
#   crates/bench/peers/signed-in-read.sh        (DURATION=10 CONNECTIONS=64 THREADS=2)
#
# Needs: node and npm, wrk, psql, and release builds of `latchkey` (for `migrate`) and
# `latchkey-bench` (its `server` mode is the server): `cargo build --release -p latchkey -p
# latchkey-bench`. VENDURE_DIR names a folder where Vendure is already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
pg_host=127.0.0.1
work=$(mktemp -d)
suffix=$$
vendure_db=vendure_bench_$suffix
latchkey_db=latchkey_bench_$suffix
pids=()
cleanup() {
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  sleep 1
  psql -h $pg_host -U postgres -q -c "DROP DATABASE IF EXISTS $vendure_db WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS $latchkey_db WITH (FORCE)" >/dev/null 2>&1 || true
  [ -n "${VENDURE_DIR:-}" ] && rm -f "$VENDURE_DIR/vendure-server.js"
  rm -rf "$work"
}
trap cleanup EXIT

gql() { # url, token (or ""), body
  local auth=()
  [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
  curl -s -X POST "$1" -H 'Content-Type: application/json' ${auth[@]+"${auth[@]}"} -d "$3"
}

wait_for() { # url
  for _ in $(seq 1 600); do
    curl -s -o /dev/null -X POST "$1" -H 'Content-Type: application/json' -d '{"query":"{ __typename }"}' && return 0
    sleep 0.2
  done
  echo "$1 did not start" >&2
  return 1
}

measure() { # label, url, token, query
  local answer
  answer=$(gql "$2" "$3" "{\"query\":\"$4\"}")
  if echo "$answer" | grep -q '"errors"'; then echo "$1: $answer" >&2; return 1; fi
  # A warm-up, then the measured run.
  QUERY="$4" TOKEN="$3" wrk -t"$threads" -c"$connections" -d3s -s "$here/signed-in.lua" "$2" >/dev/null
  echo "$1: $(QUERY="$4" TOKEN="$3" wrk -t"$threads" -c"$connections" -d"${duration}s" -s "$here/signed-in.lua" "$2" | grep RESULT | sed 's/RESULT //')"
}

psql -h $pg_host -U postgres -q -c "CREATE DATABASE $vendure_db" -c "CREATE DATABASE $latchkey_db"

# Vendure.
vendure=${VENDURE_DIR:-$work}
if [ ! -d "$vendure/node_modules/@vendure/core" ]; then
  (cd "$vendure" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error @vendure/core@3.7.3 pg >/dev/null)
fi
cp "$here/vendure-server.js" "$vendure/"
(cd "$vendure" && VENDURE_DISABLE_TELEMETRY=true VENDURE_DB=$vendure_db PORT=3300 exec node vendure-server.js >"$work/vendure.log" 2>&1) &
pids+=($!)
shop=http://127.0.0.1:3300/shop-api
wait_for $shop
gql $shop "" '{"query":"mutation { registerCustomerAccount(input: {emailAddress: \"bench@example.com\", password: \"Quartz-Harbor-7719\", firstName: \"Bench\", lastName: \"Customer\"}) { __typename } }"}' >/dev/null
vendure_token=$(curl -s -D - -o /dev/null -X POST $shop -H 'Content-Type: application/json' \
  -d '{"query":"mutation { login(username: \"bench@example.com\", password: \"Quartz-Harbor-7719\") { __typename } }"}' \
  | tr -d '\r' | awk -F': ' 'tolower($1) == "vendure-auth-token" {print $2}')
[ -n "$vendure_token" ] || { echo "no Vendure token" >&2; exit 1; }
measure "Vendure 3.7.3 activeCustomer" $shop "$vendure_token" "{ activeCustomer { id emailAddress } }"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# Latchkey, cache off then on.
bench="$root/target/release/latchkey-bench"
export DATABASE_URL="postgres://postgres@$pg_host:5432/$latchkey_db"
export LATCHKEY_JWT_SECRET="peers-bench-secret-0123456789abcdef0123456789"
export LATCHKEY_MAIL_DIR="$work/mail" LATCHKEY_METRICS_LISTEN=off LATCHKEY_ADMIN_2FA=optional
"$root/target/release/latchkey" migrate
for cache in 0 100000; do
  LATCHKEY_LISTEN=127.0.0.1:3400 LATCHKEY_SESSION_CACHE_SIZE=$cache "$bench" server >"$work/latchkey.log" 2>&1 &
  pids+=($!)
  api=http://127.0.0.1:3400/graphql
  wait_for $api
  gql $api "" '{"query":"mutation { createCustomer(input: {email: \"bench@example.com\", firstname: \"Bench\", lastname: \"Customer\", password: \"Quartz-Harbor-7719\"}) { id } }"}' >/dev/null
  token=$(gql $api "" '{"query":"mutation { generateCustomerToken(email: \"bench@example.com\", password: \"Quartz-Harbor-7719\") { token } }"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { echo "no Latchkey token" >&2; exit 1; }
  label="Latchkey customer, session cache on"
  [ $cache = 0 ] && label="Latchkey customer, session cache off"
  measure "$label" $api "$token" "{ customer { id email } }"
  kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
done
