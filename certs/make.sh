#!/usr/bin/env bash
# Regenerates the sslify test PKI in this directory.
# TEST KEYS ONLY: never use anything produced here outside the test suite.
#
# Usage: bash certs/make.sh   (works from any directory)
# Requires: OpenSSL 3.0 or newer (uses `openssl ca -crl_lastupdate`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
command -v openssl >/dev/null 2>&1 || { echo "make.sh: openssl not found" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/out"   # final files are assembled here, verified, then copied
LEAF="$TMP/leaf" # single certificates (no chain) and CSRs
mkdir -p "$OUT" "$LEAF"

DAYS=36500
SUBJ="/C=US/O=sslify test"

# Fixed serials for the CRL serial-comparison tests.
SERIAL_PAD="80AB00CD12"  # high bit set: DER needs a leading 0x00 byte
SERIAL_ZERO="1200003400" # zero bytes in the middle and at the end

# --------------------------------------------------------------------------
# Configuration (also used as OPENSSL_CONF so the system config is ignored).
# --------------------------------------------------------------------------
CNF="$TMP/openssl.cnf"
cat >"$CNF" <<'EOF'
[ req ]
distinguished_name = req_dn
prompt             = no
string_mask        = utf8only

[ req_dn ]
CN = unused

[ ext_root ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ ext_intermediate ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ ext_server_ec ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ ext_server_rsa ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ ext_client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ ext_selfsigned ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash

[ ext_crl ]
authorityKeyIdentifier = keyid:always
EOF
export OPENSSL_CONF="$CNF"

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
USED_SERIALS=" $SERIAL_PAD $SERIAL_ZERO "

# Random 16-byte serial, first byte in 0x40..0x7F (positive, no padding byte,
# always exactly 16 bytes long). Result is stored in $SERIAL (uppercase hex).
new_serial() {
  local h
  while :; do
    h="$(openssl rand -hex 16)"
    SERIAL="$(printf '%02X' $(( (0x${h:0:2} & 0x3F) | 0x40 )))${h:2}"
    SERIAL="${SERIAL^^}"
    case "$USED_SERIALS" in *" $SERIAL "*) continue ;; esac
    USED_SERIALS+="$SERIAL "
    return 0
  done
}

key_ec()  { openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
              -pkeyopt ec_param_enc:named_curve -out "$1"; }
key_rsa() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# self_signed KEY CN EXT OUT
self_signed() {
  new_serial
  openssl req -new -x509 -sha256 -days "$DAYS" -key "$1" -subj "$SUBJ/CN=$2" \
    -set_serial "0x$SERIAL" -extensions "$3" -out "$4"
}

# csr KEY CN OUT
csr() { openssl req -new -sha256 -key "$1" -subj "$SUBJ/CN=$2" -out "$3"; }

# issue KEY CN EXT CA_CERT CA_KEY SERIAL_HEX OUT
issue() {
  csr "$1" "$2" "$LEAF/tmp.csr"
  openssl x509 -req -sha256 -days "$DAYS" -in "$LEAF/tmp.csr" \
    -CA "$4" -CAkey "$5" -set_serial "0x$6" \
    -extfile "$CNF" -extensions "$3" -out "$7" 2>/dev/null
}

# init_db DIR -- minimal `openssl ca` database + config in DIR
init_db() {
  mkdir -p "$1/new"
  : >"$1/index.txt"
  echo 1000 >"$1/crlnumber"
  echo 01 >"$1/serial"
  cat >"$1/ca.cnf" <<EOF
[ ca ]
default_ca = ca_db

[ ca_db ]
dir              = $1
database         = \$dir/index.txt
new_certs_dir    = \$dir/new
serial           = \$dir/serial
crlnumber        = \$dir/crlnumber
default_md       = sha256
default_days     = $DAYS
default_crl_days = $DAYS
policy           = policy_any
unique_subject   = no
preserve         = yes
email_in_dn      = no
copy_extensions  = none
crl_extensions   = ext_crl

[ policy_any ]
countryName      = optional
organizationName = optional
commonName       = supplied

[ ext_crl ]
authorityKeyIdentifier = keyid:always
EOF
}

# ca_cmd DBDIR CA_CERT CA_KEY ARGS... -- run `openssl ca` quietly on a database
ca_cmd() {
  local db="$1" cert="$2" key="$3"; shift 3
  if ! openssl ca -batch -config "$db/ca.cnf" -cert "$cert" -keyfile "$key" "$@" \
       >"$TMP/ca.log" 2>&1; then
    cat "$TMP/ca.log" >&2
    return 1
  fi
}

# --------------------------------------------------------------------------
# CAs
# --------------------------------------------------------------------------
echo "== CAs"
key_ec "$OUT/ca.key"
self_signed "$OUT/ca.key" "sslify test root CA" ext_root "$OUT/ca.pem"

key_ec "$OUT/intermediate.key"
new_serial; INTERMEDIATE_SERIAL="$SERIAL"
issue "$OUT/intermediate.key" "sslify test intermediate CA" ext_intermediate \
  "$OUT/ca.pem" "$OUT/ca.key" "$INTERMEDIATE_SERIAL" "$OUT/intermediate.pem"

key_ec "$OUT/other-ca.key"
self_signed "$OUT/other-ca.key" "sslify test other CA" ext_root "$OUT/other-ca.pem"

cp "$OUT/ca.pem" "$OUT/client-ca.pem"
cat "$OUT/ca.pem" "$OUT/intermediate.pem" >"$OUT/client-ca-bundle.pem"

INT_CERT="$OUT/intermediate.pem"
INT_KEY="$OUT/intermediate.key"

# --------------------------------------------------------------------------
# Server certificates
# --------------------------------------------------------------------------
echo "== server certificates"
key_ec "$OUT/server-ec.key"
new_serial
issue "$OUT/server-ec.key" localhost ext_server_ec "$INT_CERT" "$INT_KEY" "$SERIAL" \
  "$LEAF/server-ec.crt"
cat "$LEAF/server-ec.crt" "$INT_CERT" >"$OUT/server-ec.pem"

key_rsa "$OUT/server-rsa.key"
new_serial
issue "$OUT/server-rsa.key" localhost ext_server_rsa "$INT_CERT" "$INT_KEY" "$SERIAL" \
  "$LEAF/server-rsa.crt"
cat "$LEAF/server-rsa.crt" "$INT_CERT" >"$OUT/server-rsa.pem"

# --------------------------------------------------------------------------
# Client certificates
# --------------------------------------------------------------------------
echo "== client certificates"
# client_int NAME SERIAL -- client cert issued by the intermediate, chain file
client_int() {
  key_ec "$OUT/client-$1.key"
  issue "$OUT/client-$1.key" "client $1" ext_client "$INT_CERT" "$INT_KEY" "$2" \
    "$LEAF/client-$1.crt"
  cat "$LEAF/client-$1.crt" "$INT_CERT" >"$OUT/client-$1.pem"
}

new_serial; client_int valid "$SERIAL"
new_serial; REVOKED_SERIAL="$SERIAL"; client_int revoked "$REVOKED_SERIAL"
client_int serialpad "$SERIAL_PAD"
client_int serialzero "$SERIAL_ZERO"

# expired: issued through `openssl ca` to get fixed past dates.
DB_EXP="$TMP/db-expired"
init_db "$DB_EXP"
new_serial; echo "$SERIAL" >"$DB_EXP/serial"
key_ec "$OUT/client-expired.key"
csr "$OUT/client-expired.key" "client expired" "$LEAF/client-expired.csr"
ca_cmd "$DB_EXP" "$INT_CERT" "$INT_KEY" -notext \
  -in "$LEAF/client-expired.csr" -out "$LEAF/client-expired.crt" \
  -startdate 20200101000000Z -enddate 20210101000000Z \
  -extfile "$CNF" -extensions ext_client
cat "$LEAF/client-expired.crt" "$INT_CERT" >"$OUT/client-expired.pem"

# untrusted: issued by the unrelated "other" CA.
key_ec "$OUT/client-untrusted.key"
new_serial
issue "$OUT/client-untrusted.key" "client untrusted" ext_client \
  "$OUT/other-ca.pem" "$OUT/other-ca.key" "$SERIAL" "$LEAF/client-untrusted.crt"
cat "$LEAF/client-untrusted.crt" "$OUT/other-ca.pem" >"$OUT/client-untrusted.pem"

# selfsigned: self-signed end-entity certificate (CA:FALSE).
key_ec "$OUT/client-selfsigned.key"
self_signed "$OUT/client-selfsigned.key" "client selfsigned" ext_selfsigned \
  "$OUT/client-selfsigned.pem"

# --------------------------------------------------------------------------
# CRLs
# --------------------------------------------------------------------------
echo "== CRLs"
# Intermediate's main database: empty CRL first, then revoke client-revoked.
# (CRL numbers: crl-empty < crl-expired < crl.)
DB_INT="$TMP/db-intermediate"
init_db "$DB_INT"
ca_cmd "$DB_INT" "$INT_CERT" "$INT_KEY" -gencrl -crldays "$DAYS" -out "$OUT/crl-empty.pem"
ca_cmd "$DB_INT" "$INT_CERT" "$INT_KEY" -revoke "$LEAF/client-revoked.crt" \
  -crl_reason keyCompromise
ca_cmd "$DB_INT" "$INT_CERT" "$INT_KEY" -gencrl \
  -crl_lastupdate 20200101000000Z -crl_nextupdate 20210101000000Z \
  -out "$OUT/crl-expired.pem"
ca_cmd "$DB_INT" "$INT_CERT" "$INT_KEY" -gencrl -crldays "$DAYS" -out "$OUT/crl.pem"

# Other CA: lists the same serial as client-revoked.
DB_OTHER="$TMP/db-other"
init_db "$DB_OTHER"
ca_cmd "$DB_OTHER" "$OUT/other-ca.pem" "$OUT/other-ca.key" \
  -revoke "$LEAF/client-revoked.crt" -crl_reason keyCompromise
ca_cmd "$DB_OTHER" "$OUT/other-ca.pem" "$OUT/other-ca.key" -gencrl -crldays "$DAYS" \
  -out "$OUT/crl-other-ca.pem"

# Root CA: valid, empty.
DB_ROOT="$TMP/db-root"
init_db "$DB_ROOT"
ca_cmd "$DB_ROOT" "$OUT/ca.pem" "$OUT/ca.key" -gencrl -crldays "$DAYS" \
  -out "$OUT/crl-root.pem"

# Intermediate CRL whose only entry is the intermediate's own serial.
DB_CASER="$TMP/db-ca-serial"
init_db "$DB_CASER"
ca_cmd "$DB_CASER" "$INT_CERT" "$INT_KEY" -revoke "$INT_CERT" -crl_reason keyCompromise
ca_cmd "$DB_CASER" "$INT_CERT" "$INT_KEY" -gencrl -crldays "$DAYS" \
  -out "$OUT/crl-ca-serial.pem"

# Intermediate CRL listing client-serialpad and client-serialzero.
DB_PAD="$TMP/db-serialpad"
init_db "$DB_PAD"
ca_cmd "$DB_PAD" "$INT_CERT" "$INT_KEY" -revoke "$LEAF/client-serialpad.crt" \
  -crl_reason keyCompromise
ca_cmd "$DB_PAD" "$INT_CERT" "$INT_KEY" -revoke "$LEAF/client-serialzero.crt" \
  -crl_reason keyCompromise
ca_cmd "$DB_PAD" "$INT_CERT" "$INT_KEY" -gencrl -crldays "$DAYS" \
  -out "$OUT/crl-serialpad.pem"

# --------------------------------------------------------------------------
# Self-checks (fail loudly on any surprise)
# --------------------------------------------------------------------------
echo "== checks"
FAILED=0
cd "$OUT"

# expect_ok DESC CMD...  -- command must succeed and print ": OK"
expect_ok() {
  local desc="$1" out; shift
  if out="$("$@" 2>&1)" && grep -q ': OK$' <<<"$out"; then
    echo "  ok    $desc"
  else
    echo "  FAIL  $desc"; sed 's/^/        /' <<<"$out"; FAILED=1
  fi
}
# expect_err PATTERN DESC CMD...  -- command must fail with PATTERN in output
expect_err() {
  local pat="$1" desc="$2" out; shift 2
  if out="$("$@" 2>&1)"; then
    echo "  FAIL  $desc (unexpectedly verified)"; sed 's/^/        /' <<<"$out"; FAILED=1
  elif grep -q "$pat" <<<"$out"; then
    echo "  ok    $desc"
  else
    echo "  FAIL  $desc (wrong error)"; sed 's/^/        /' <<<"$out"; FAILED=1
  fi
}
# expect_eq DESC ACTUAL EXPECTED
expect_eq() {
  if [[ "$2" == "$3" ]]; then echo "  ok    $1"
  else echo "  FAIL  $1: got '$2', expected '$3'"; FAILED=1; fi
}

V=(openssl verify -CAfile ca.pem -untrusted intermediate.pem)
for f in server-ec server-rsa client-valid client-revoked client-serialpad client-serialzero; do
  expect_ok "$f.pem verifies" "${V[@]}" "$f.pem"
done
expect_ok "server-ec.pem verifies for serverAuth" "${V[@]}" -purpose sslserver server-ec.pem
expect_ok "server-rsa.pem verifies for serverAuth" "${V[@]}" -purpose sslserver server-rsa.pem
expect_ok "client-valid.pem verifies for clientAuth" "${V[@]}" -purpose sslclient client-valid.pem
expect_ok "intermediate.pem verifies against ca.pem" openssl verify -CAfile ca.pem intermediate.pem
expect_ok "client-valid.pem verifies with client-ca-bundle.pem" \
  openssl verify -CAfile client-ca-bundle.pem client-valid.pem
expect_ok "client-untrusted.pem verifies against other-ca.pem" \
  openssl verify -CAfile other-ca.pem client-untrusted.pem

expect_err "certificate has expired" "client-expired.pem is expired" "${V[@]}" client-expired.pem
expect_err "unable to get local issuer certificate" "client-untrusted.pem is untrusted" \
  "${V[@]}" client-untrusted.pem
expect_err "self-signed certificate" "client-selfsigned.pem is untrusted" \
  "${V[@]}" client-selfsigned.pem

VC=("${V[@]}" -crl_check)
expect_err "certificate revoked" "client-revoked.pem revoked by crl.pem" \
  "${VC[@]}" -CRLfile crl.pem client-revoked.pem
expect_err "certificate revoked" "client-revoked.pem revoked by crl.pem (chain check)" \
  "${V[@]}" -crl_check_all -CRLfile crl.pem -CRLfile crl-root.pem client-revoked.pem
expect_ok "client-valid.pem not revoked by crl.pem" "${VC[@]}" -CRLfile crl.pem client-valid.pem
expect_ok "client-valid.pem passes full-chain CRL check" \
  "${V[@]}" -crl_check_all -CRLfile crl.pem -CRLfile crl-root.pem client-valid.pem
expect_ok "client-revoked.pem not revoked by crl-empty.pem" \
  "${VC[@]}" -CRLfile crl-empty.pem client-revoked.pem
expect_ok "client-valid.pem not revoked by crl-ca-serial.pem" \
  "${VC[@]}" -CRLfile crl-ca-serial.pem client-valid.pem
expect_err "CRL has expired" "crl-expired.pem is expired" \
  "${VC[@]}" -CRLfile crl-expired.pem client-valid.pem
expect_err "unable to get certificate CRL" "crl-other-ca.pem does not apply to the intermediate" \
  "${VC[@]}" -CRLfile crl-other-ca.pem client-revoked.pem
expect_err "certificate revoked" "client-serialpad.pem revoked by crl-serialpad.pem" \
  "${VC[@]}" -CRLfile crl-serialpad.pem client-serialpad.pem
expect_err "certificate revoked" "client-serialzero.pem revoked by crl-serialpad.pem" \
  "${VC[@]}" -CRLfile crl-serialpad.pem client-serialzero.pem

serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }
crl_serials() {
  openssl crl -noout -text -in "$1" | sed -n 's/^ *Serial Number: *//p' | sorted_words
}
sorted_words() { LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }
expect_eq "client-serialpad serial"  "$(serial_of client-serialpad.pem)" "$SERIAL_PAD"
expect_eq "client-serialzero serial" "$(serial_of client-serialzero.pem)" "$SERIAL_ZERO"
expect_eq "crl.pem entries"          "$(crl_serials crl.pem)" "$REVOKED_SERIAL"
expect_eq "crl-expired.pem entries"  "$(crl_serials crl-expired.pem)" "$REVOKED_SERIAL"
expect_eq "crl-other-ca.pem entries" "$(crl_serials crl-other-ca.pem)" "$REVOKED_SERIAL"
expect_eq "crl-ca-serial.pem entries" "$(crl_serials crl-ca-serial.pem)" "$INTERMEDIATE_SERIAL"
expect_eq "crl-serialpad.pem entries" "$(crl_serials crl-serialpad.pem)" \
  "$(printf '%s\n' "$SERIAL_PAD" "$SERIAL_ZERO" | sorted_words)"
expect_eq "crl-empty.pem entries"    "$(crl_serials crl-empty.pem)" ""
expect_eq "crl-root.pem entries"     "$(crl_serials crl-root.pem)" ""

if [[ "$FAILED" != 0 ]]; then
  echo "make.sh: self-checks FAILED; certs/ left unchanged" >&2
  exit 1
fi
cd - >/dev/null

# --------------------------------------------------------------------------
# Install into certs/ and summarise
# --------------------------------------------------------------------------
FILES=(
  ca.pem ca.key intermediate.pem intermediate.key other-ca.pem other-ca.key
  client-ca.pem client-ca-bundle.pem
  server-ec.pem server-ec.key server-rsa.pem server-rsa.key
  client-valid.pem client-valid.key client-expired.pem client-expired.key
  client-revoked.pem client-revoked.key client-untrusted.pem client-untrusted.key
  client-selfsigned.pem client-selfsigned.key
  client-serialpad.pem client-serialpad.key client-serialzero.pem client-serialzero.key
  crl.pem crl-empty.pem crl-expired.pem crl-other-ca.pem crl-root.pem
  crl-ca-serial.pem crl-serialpad.pem
)
for f in "${FILES[@]}"; do
  cp "$OUT/$f" "./$f"
done

echo "== summary (${#FILES[@]} files written to $(pwd))"
for f in "${FILES[@]}"; do
  case "$f" in
    *.key) ;;
    crl*.pem)
      printf '  %-24s CRL  issuer=%s entries=[%s]\n' "$f" \
        "$(openssl crl -noout -issuer -in "$f" | sed 's/.*CN *= *//')" \
        "$(crl_serials "$f")" ;;
    *.pem)
      printf '  %-24s cert CN=%s serial=%s notAfter=%s\n' "$f" \
        "$(openssl x509 -noout -subject -in "$f" | sed 's/.*CN *= *//')" \
        "$(serial_of "$f")" \
        "$(openssl x509 -noout -enddate -in "$f" | sed 's/^notAfter=//')" ;;
  esac
done
echo "done."
