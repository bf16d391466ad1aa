#!/usr/bin/env bash
# Installs the SQS server (moto in server mode) and the aws CLI into .local/venv, once per pin.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
stamp=$VENV_DIR/.installed
want="moto[server]==$MOTO_VERSION awscli==$AWSCLI_VERSION (wrapper 2)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
log "installing $want into ${VENV_DIR#"$ROOT_DIR"/}"
python3 -m venv "$VENV_DIR"
# shellcheck disable=SC2086
"$VENV_DIR/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" "awscli==$AWSCLI_VERSION"
mkdir -p "$LOCAL_DIR/bin"
# awscli v1 pins SQS to its regional AWS host and so ignores AWS_ENDPOINT_URL for this one service;
# the wrapper passes the variable on as --endpoint-url unless the caller gave one.
rm -f "$LOCAL_DIR/bin/aws"
cat > "$LOCAL_DIR/bin/aws" <<SH
#!/usr/bin/env bash
case " \$* " in *" --endpoint-url"*) exec "$VENV_DIR/bin/aws" "\$@" ;; esac
exec "$VENV_DIR/bin/aws" \${AWS_ENDPOINT_URL:+--endpoint-url "\$AWS_ENDPOINT_URL"} "\$@"
SH
chmod +x "$LOCAL_DIR/bin/aws"
echo "$want" > "$stamp"
