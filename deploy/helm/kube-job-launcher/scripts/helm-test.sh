# The `helm test` pod's script (templates/tests/test-api.yaml), POSIX sh with curl. Everything
# comes from the environment:
#   LAUNCHER_API, LAUNCHER_ADMIN  base URLs of the API and the admin port
#   TOKEN_FILE        a bearer token: the first line of a token file (`token,user,...` or a bare
#                     token; `#` lines skipped) or a projected ServiceAccount token; unset: none
#   CURL_TLS          more curl options for the API (e.g. --insecure)
#   EXAMPLE_TEMPLATE  a template to launch and follow to `succeeded` ("" skips the launch)
#   TIMEOUT_SECONDS   how long to wait for readiness and for the Job
# hack/chart-test.sh runs this same script against a launcher on the developer's machine.
set -eu
timeout=${TIMEOUT_SECONDS:-300}
deadline=$(( $(date +%s) + timeout ))
body=${TMPDIR:-/tmp}/launcher-test-body
headers=${TMPDIR:-/tmp}/launcher-test-headers
token=
if [ -n "${TOKEN_FILE:-}" ]; then
  token=$(grep -v '^[[:space:]]*#' "$TOKEN_FILE" | grep -v '^[[:space:]]*$' | head -n 1 | cut -d, -f1 | tr -d '[:space:]')
  [ -n "$token" ] || { echo "FAIL: no token in $TOKEN_FILE"; exit 1; }
fi
fail() { echo "FAIL: $*"; if [ -s "$body" ]; then echo "--- answer:"; cat "$body"; echo; fi; exit 1; }
# api METHOD PATH [BODY]: prints the HTTP status; the body lands in $body, the headers in $headers.
api() {
  # shellcheck disable=SC2086 # CURL_TLS holds options, split on purpose
  curl -sS --max-time 20 ${CURL_TLS:-} -o "$body" -D "$headers" -w '%{http_code}' -X "$1" \
    ${token:+-H} ${token:+"Authorization: Bearer $token"} \
    ${3:+-H} ${3:+"Content-Type: application/json"} ${3:+--data} ${3:+"$3"} \
    "$LAUNCHER_API$2" || true
}

echo "GET $LAUNCHER_ADMIN/readyz"
until code=$(curl -sS --max-time 10 -o "$body" -w "%{http_code}" "$LAUNCHER_ADMIN/readyz" || true) && [ "$code" = 200 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "/readyz answered $code for ${timeout}s"
  sleep 2
done
echo "  ready"

echo "GET $LAUNCHER_API/v1/templates"
code=$(api GET /v1/templates)
[ "$code" = 200 ] || fail "GET /v1/templates answered $code, expected 200"
echo "  $(grep -o '"name":"[^"]*"' "$body" | wc -l | tr -d ' ') template(s)"

if [ -n "${EXAMPLE_TEMPLATE:-}" ]; then
  echo "POST $LAUNCHER_API/v1/jobs (template $EXAMPLE_TEMPLATE)"
  code=$(api POST /v1/jobs "{\"template\":\"$EXAMPLE_TEMPLATE\"}")
  [ "$code" = 201 ] || fail "POST /v1/jobs answered $code, expected 201"
  location=$(grep -i '^location:' "$headers" | head -n 1 | cut -d' ' -f2- | tr -d '\r')
  case $location in
    /v1/jobs/*) ;;
    *) fail "POST /v1/jobs answered no Location of a Job: '$location'" ;;
  esac
  echo "  launched ${location#/v1/jobs/}"
  state=
  while :; do
    code=$(api GET "$location")
    [ "$code" = 200 ] || fail "GET $location answered $code"
    state=$(grep -o '"state":"[a-z]*"' "$body" | head -n 1 | cut -d'"' -f4)
    case $state in
      succeeded) break ;;
      failed | cancelled) fail "${location#/v1/jobs/} ended $state" ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "${location#/v1/jobs/} is still '$state' after ${timeout}s"
    sleep 2
  done
  echo "  ${location#/v1/jobs/} $state"
fi
echo "PASS"
