#!/usr/bin/env bash
# Makes a development certificate authority and certificates for Sluice's
# mutual TLS, with openssl.
#
#   scripts/gen-certs.sh [-d DIR] [--days N] [--host NAME_OR_IP]... NAME:ROLE[+ROLE]...
#
# In DIR (default ./certs): ca.pem and ca.key (made once, reused after), and
# for each NAME: NAME.pem (its certificate, signed by the CA) and NAME.key
# (its private key, mode 0600). The certificate's common name is NAME; each
# ROLE (driver, worker, admin, viewer) becomes a URI SAN sluice:role=ROLE,
# which is what Sluice authorizes by (docs/security.md). DNS and IP SANs:
# NAME, localhost, 127.0.0.1 and every --host.
#
# Example, a cluster on one host plus an operator and a dashboard:
#   scripts/gen-certs.sh -d /etc/sluice/tls driver-1:driver worker-1:worker \
#       admin:admin viewer:viewer
#
# For production, use your own CA and keep its key off the cluster's hosts:
# any certificate it signs with sluice:role=admin can run code on the workers.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

dir=certs
days=825
hosts=()
specs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dir=${2:?-d needs a directory}; shift 2 ;;
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --host) hosts+=("${2:?--host needs a name or an address}"); shift 2 ;;
    -h|--help) usage ;;
    -*) echo "gen-certs: error: unknown option $1" >&2; usage ;;
    *) specs+=("$1"); shift ;;
  esac
done
[ ${#specs[@]} -gt 0 ] || { echo "gen-certs: error: name at least one NAME:ROLE" >&2; usage; }
case "$days" in ''|*[!0-9]*) echo "gen-certs: error: --days $days is not a number" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "gen-certs: error: openssl is not installed (apt-get install openssl)" >&2; exit 1; }

for spec in "${specs[@]}"; do
  name=${spec%%:*}
  roles=${spec#*:}
  if [ "$name" = "$spec" ] || [ -z "$name" ] || [ -z "$roles" ]; then
    echo "gen-certs: error: '$spec' is not NAME:ROLE[+ROLE]" >&2; exit 2
  fi
  case "$name" in *[!A-Za-z0-9_.-]*|.*) echo "gen-certs: error: '$name': a name is [A-Za-z0-9_.-], not starting with '.'" >&2; exit 2 ;; esac
  for role in ${roles//+/ }; do
    case "$role" in driver|worker|admin|viewer) ;;
      *) echo "gen-certs: error: '$role' in '$spec' is not a role (driver, worker, admin, viewer)" >&2; exit 2 ;;
    esac
  done
done

mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" -subj "/CN=Sluice development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 644 "$dir/ca.pem"
  echo "gen-certs: made the CA $dir/ca.pem"
fi

for spec in "${specs[@]}"; do
  name=${spec%%:*}
  roles=${spec#*:}
  san="DNS:$name,DNS:localhost,IP:127.0.0.1"
  for h in "${hosts[@]+"${hosts[@]}"}"; do
    if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san="$san,IP:$h"; else san="$san,DNS:$h"; fi
  done
  for role in ${roles//+/ }; do san="$san,URI:sluice:role=$role"; done
  ext=$(mktemp)
  trap 'rm -f "$ext"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/$name.pem" -days "$days" -extfile "$ext" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  chmod 600 "$dir/$name.key"
  chmod 644 "$dir/$name.pem"
  echo "gen-certs: $dir/$name.pem ($roles) and $dir/$name.key"
done
