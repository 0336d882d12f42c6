#!/usr/bin/env bash
# The sample exchange, end to end on the local platform: catalog and grants applied, each sample
# department's connector publishes its source data (GBK CSV with bad rows, XLSX, SQLite, HTTP
# push), the router delivers to the granted consumers, a department requests data through the
# portal's API and the provider approves it, a consumer objects to a wrong record and the
# provider's next export fixes it (the exchange finds the fix; 数据质量异议), and the audit trail
# is verified. The portal stays running at the end (its URL and the sample accounts are printed).
#
# --secure: the same on the secure platform (SASL/SCRAM over TLS, broker ACLs derived from the
# grants, data in .exchange-secure/): every connector, the router and each consumer act as their
# own principal, and a department reading what it was not granted is refused by the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
secure=false
[ "${1:-}" = "--secure" ] && secure=true
bash scripts/setup.sh
x=$PWD/.venv/bin/exchange
py=.venv/bin/python
creds=.exchange-secure/departments
# `env_of PRINCIPAL`: the environment that makes `exchange` act as that principal (secure mode;
# nothing in open mode). `as PRINCIPAL cmd…` runs cmd so; background processes use
# `env $(env_of P) cmd &` directly, so that $! is the process itself.
env_of() {
  if $secure; then
    local file=$creds/$1.env
    [ -f "$file" ] || file=.exchange-secure/secure/env/$1.env
    grep -v '^#' "$file"
  fi
}
as() { env $(env_of "$1") "${@:2}"; }
if $secure; then
  export EXCHANGE_DEV__STATE_DIR=$PWD/.exchange-secure
  $x dev up --secure
  set -a && . .exchange-secure/secure/env/operator.env && set +a   # the operator, from here on
else
  $x dev up
fi
$x catalog validate
$x catalog apply
$x catalog list
if $secure; then
  echo "== each audit writer signs with its own key (made by dev up): the operator registers them"
  for p in operator router; do
    $x audit keys add "$p" --private-key-file ".exchange-secure/secure/keys/$p.audit-signing.pem"
  done
  $x audit keys list
else
  $x audit keygen   # open mode: one HMAC key seals the trail (secure mode: each writer signs)
fi

echo "== grants (config/grants): requested, approved by the provider or the operator, audited"
$x grants apply --by 演示操作员
$x grant list

if $secure; then
  echo "== credentials for each department's connectors and consumers, then ACLs from the grants"
  for d in gongan scjg rsj mzj; do $x dept credentials "$d" --role connector --out "$creds"; done
  for d in mzj shuocheng_rsj zjj swj; do $x dept credentials "$d" --role consumer --out "$creds"; done
  $x acl sync
  # Grants approved, revoked or expiring from now on change the ACLs by themselves.
  $x acl sync --watch > .exchange-secure/acl-watch.log 2>&1 &
  watch=$!
fi

if ! $secure; then
  echo "== the portal: sample accounts, then one replica in the background"
  portal_password=.exchange/portal-demo-password
  [ -f "$portal_password" ] || $py -c 'import secrets; print("demo-" + secrets.token_urlsafe(12))' > "$portal_password"
  while read -r dept user roles name; do
    $x portal accounts add "$dept" "$user" --roles "$roles" --display-name "$name" \
      --password-file "$portal_password" --exist-ok
  done <<'ACCOUNTS'
dsj root operator,admin 平台管理员
mzj wang applicant,viewer 王民政
gongan li approver,viewer 李公安
ACCOUNTS
  portal_port=${EXCHANGE_PORTAL__PORT:-8600}
  # The portal an earlier run of this demo left running (by its pid, never by name).
  if [ -f .exchange/portal-demo.pid ] && kill -0 "$(cat .exchange/portal-demo.pid)" 2>/dev/null; then
    kill -TERM "$(cat .exchange/portal-demo.pid)" && sleep 1
  fi
  $x portal serve --replica demo --port "$portal_port" > .exchange/portal-demo.log 2>&1 &
  portal=$!
  echo "$portal" > .exchange/portal-demo.pid
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$portal_port/api/v1/health" >/dev/null && break
    kill -0 "$portal" 2>/dev/null || { cat .exchange/portal-demo.log >&2; exit 1; }
    sleep 0.5
  done
fi

echo "== the router (faust-streaming), in the background"
mkdir -p .exchange
env $(env_of router) $x router --worker-id demo --metrics-port 0 --log-level warning > .exchange/router-demo.log 2>&1 &
router=$!
quality=
if ! $secure; then
  echo "== the quality worker (measures, objections' fixes), in the background, every 2 s"
  EXCHANGE_QUALITY__INTERVAL_S=2 $x quality run --name demo --metrics-port 0 --log-level warning \
    > .exchange/quality-demo.log 2>&1 &
  quality=$!
fi
stop_router() {
  kill -TERM "$router" 2>/dev/null && wait "$router" 2>/dev/null || true
  if [ -n "$quality" ]; then kill -TERM "$quality" 2>/dev/null && wait "$quality" 2>/dev/null || true; fi
  if $secure; then kill -TERM "$watch" 2>/dev/null && wait "$watch" 2>/dev/null || true; fi
}
# On a failure the portal goes too; a demo that ends well leaves it running.
on_exit() {
  local rc=$?
  stop_router
  if [ "$rc" -ne 0 ] && [ -n "${portal:-}" ]; then kill -TERM "$portal" 2>/dev/null || true; fi
}
trap on_exit EXIT

echo "== sample source data (samples/data) into the connectors' drop folders and database"
work=.exchange/connectors
mkdir -p "$work/gongan/inbox" "$work/scjg/inbox" "$work/rsj"
cp samples/data/gongan/population.csv "$work/gongan/inbox/"
cp samples/data/scjg/legal_entities.xlsx "$work/scjg/inbox/"
[ -f "$work/rsj/social_insurance.db" ] || cp samples/data/rsj/social_insurance.db "$work/rsj/"

for c in gongan-population scjg-legal-entities rsj-social-insurance; do
  echo "== connector $c"
  as "connector-${c%%-*}" $x connector check "config/connectors/$c.yaml" --rows 3
  as "connector-${c%%-*}" $x connector run "config/connectors/$c.yaml" --once --log-level warning
done

echo "== connector mzj-marriage-push (HTTP): a good batch, then a batch with a wrong citizen ID"
env $(env_of connector-mzj) $x connector run config/connectors/mzj-marriage-push.yaml --log-level warning &
pid=$!
trap 'rc=$?; kill -TERM $pid 2>/dev/null || true; (exit $rc); on_exit' EXIT
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
trap on_exit EXIT

$x connector positions
echo "reports of the processed files: $work/*/inbox/done/*.report.csv"

echo "== what each consumer received (router log: .exchange/router-demo.log)"
$x deliveries --wait 180

# What a grant does not allow is not there, read as a hostile consumer would: every delivery
# topic it has, from offset 0 (`exchange readable`).
moved=140602194001010011   # 许桂红, 朔城区 (140602): in the county grant shuocheng-population
echo "== $moved moves from 朔城区 (140602) to 平鲁区 (140603); the county's table before…"
$x readable shuocheng_rsj gongan.resident_population --key "$moved"
# The next full export (GBK, as the population system writes it): that person's region changed.
$py - "$work/gongan/inbox/population-moved.csv" "$moved" <<'PY'
import sys
text = open("samples/data/gongan/population.csv", "rb").read().decode("gbk")
lines = [
    line.replace(",140602,", ",140603,") if line.startswith(sys.argv[2] + ",") else line
    for line in text.splitlines()
]
open(sys.argv[1], "wb").write(("\n".join(lines) + "\n").encode("gbk"))
PY
as connector-gongan $x connector run config/connectors/gongan-population.yaml --once --log-level warning
$x deliveries --wait 180 > /dev/null
echo "…and after: gone from the county's table (a delete was delivered)"
$x readable shuocheng_rsj gongan.resident_population --key "$moved"

echo "== a grant revoked: within 30 s nothing of it is left for its consumer to read"
grant="mzj-demo-$(date +%s)"
$x grant request --as mzj --entry gongan.resident_population --fields name,region_code \
  --purpose data_verification --legal-basis 演示 --days 1 --id "$grant"
$x grant approve "$grant" --as gongan --by 王科长 --note 演示
$x deliveries --wait 180 --consumer mzj
$x grant revoke "$grant" --as gongan --by 王科长 --note 演示结束
for _ in $(seq 1 30); do
  $x readable mzj gongan.resident_population 2>/dev/null | grep -q "$grant" || break
  sleep 1
done
$x readable mzj gongan.resident_population   # only mzj's standing grant is left

if $secure; then
  echo "== consumers as themselves: mzj reads its granted deliveries…"
  as consumer-mzj $x consume gongan.resident_population --as mzj --max 3 --idle 20
  echo "== …but with its credentials the broker refuses it swj's deliveries"
  if as consumer-mzj $x consume scjg.legal_entity --as swj --max 1 --idle 10; then
    echo "mzj read swj's deliveries" >&2
    exit 1
  fi
fi

if ! $secure; then
  echo "== through the portal's API: mzj's applicant requests data, gongan's approver approves it;"
  echo "   mzj posts a need on 供需对接清单, gongan accepts it for cataloguing"
  $py -m samples.portal_request "http://127.0.0.1:$portal_port" "$portal_password"

  echo "== 数据质量异议: mzj's system objects (SDK) to the name of 140602********0011, gongan accepts;"
  echo "   gongan's next export corrects it, the exchange finds the fix, mzj confirms"
  $py -m samples.portal_objection file "http://127.0.0.1:$portal_port" "$portal_password" .exchange/objection-demo.id
  $py - "$work/gongan/inbox/population-fixed.csv" "$moved" <<'PY'
import sys
text = open("samples/data/gongan/population.csv", "rb").read().decode("gbk")
lines = [
    line.replace(",140602,", ",140603,").replace("许桂红", "许桂虹")
    if line.startswith(sys.argv[2] + ",") else line
    for line in text.splitlines()
]
open(sys.argv[1], "wb").write(("\n".join(lines) + "\n").encode("gbk"))
PY
  as connector-gongan $x connector run config/connectors/gongan-population.yaml --once --log-level warning
  $py -m samples.portal_objection close "http://127.0.0.1:$portal_port" "$portal_password" .exchange/objection-demo.id
  echo "== the quality of each entry (exchange quality run publishes it; the portal shows it)"
  $x report assessment --period "$(date -u +%Y)Q$(( ($(date -u +%-m) - 1) / 3 + 1 ))"
fi

echo "== the platform's figures (exchange status; exchange monitor serves them to Prometheus)"
as monitor $x status --once
stop_router
trap - EXIT

echo "== the audit trail"
$x audit query --consumer mzj --entry gongan.resident_population --kind delivery.receipt | tail -n 12
$x audit verify

if ! $secure; then
  echo
  echo "== the portal runs on: http://127.0.0.1:$portal_port/ (pid $portal; stop it with: kill $portal)"
  echo "   sample accounts (department / username, password in $portal_password: $(cat "$portal_password")):"
  echo "   dsj / root (platform operator), mzj / wang (applicant), gongan / li (approver)"
fi
