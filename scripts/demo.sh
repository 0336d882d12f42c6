#!/usr/bin/env bash
# The sample exchange, end to end on the local platform: catalog and grants applied, each sample
# department's connector publishes its source data (GBK CSV with bad rows, XLSX, SQLite, HTTP
# push), the router delivers to the granted consumers, and the audit trail is verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
x=.venv/bin/exchange
py=.venv/bin/python
$x dev up
$x catalog validate
$x catalog apply
$x catalog list
$x audit keygen

echo "== grants (config/grants): requested, approved by the provider or the operator, audited"
$x grants apply --by 演示操作员
$x grant list

echo "== the router (faust-streaming), in the background"
mkdir -p .exchange
$x router --worker-id demo --metrics-port 0 --log-level warning > .exchange/router-demo.log 2>&1 &
router=$!
stop_router() { kill -TERM "$router" 2>/dev/null && wait "$router" 2>/dev/null || true; }
trap stop_router EXIT

echo "== sample source data (samples/data) into the connectors' drop folders and database"
work=.exchange/connectors
mkdir -p "$work/gongan/inbox" "$work/scjg/inbox" "$work/rsj"
cp samples/data/gongan/population.csv "$work/gongan/inbox/"
cp samples/data/scjg/legal_entities.xlsx "$work/scjg/inbox/"
[ -f "$work/rsj/social_insurance.db" ] || cp samples/data/rsj/social_insurance.db "$work/rsj/"

for c in gongan-population scjg-legal-entities rsj-social-insurance; do
  echo "== connector $c"
  $x connector check "config/connectors/$c.yaml" --rows 3
  $x connector run "config/connectors/$c.yaml" --once --log-level warning
done

echo "== connector mzj-marriage-push (HTTP): a good batch, then a batch with a wrong citizen ID"
$x connector run config/connectors/mzj-marriage-push.yaml --log-level warning &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; stop_router' EXIT
url=http://127.0.0.1:8480/v1/entries/mzj.marriage_registration/records
for _ in $(seq 1 100); do
  curl_ok=$($py -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8480/healthz', timeout=1); print(1)" 2>/dev/null || true)
  [ "$curl_ok" = 1 ] && break
  sleep 0.2
done
token=sample-mzj-token-change-me
$py -m samples.push "$url" "$token" samples/data/mzj/registrations.json
$py -m samples.push "$url" "$token" samples/data/mzj/bad-batch.json || echo "(refused, as it should be)"
kill -TERM $pid && wait $pid || true
trap stop_router EXIT

$x connector positions
echo "reports of the processed files: $work/*/inbox/done/*.report.csv"

echo "== what each consumer received (router log: .exchange/router-demo.log)"
$x deliveries --wait 180

echo "== the platform's figures (exchange status; exchange monitor serves them to Prometheus)"
$x status --once
stop_router
trap - EXIT

echo "== the audit trail"
$x audit query --consumer mzj --entry gongan.resident_population --kind delivery.receipt | tail -n 12
$x audit verify
