#!/usr/bin/env bash
# The Debian package: builds it from this build (scripts/package.sh --build-dir),
# extracts it (dpkg-deb -x), and checks its files, conffiles, Depends and
# maintainer scripts, then applies the postinst to the extracted tree
# (DPKG_ROOT) and checks its effect: the sluice user, its directories, the
# configs' modes. Leaves the .deb in OUT_DIR for the systemd test.
#   package_test.sh SOURCE_DIR BUILD_DIR OUT_DIR
set -euo pipefail
SRC=$1 BUILD=$2 OUT=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null || fail "$tool missing (scripts/setup.sh installs it)"
done

rm -rf "$OUT" && mkdir -p "$OUT"
start=$(date +%s.%N)
# gzip: a third of xz's time, for a package nobody ships.
deb=$(SLUICE_CPACK_ARGS="-D CPACK_DEBIAN_COMPRESSION_TYPE=gzip" \
      "$SRC/scripts/package.sh" --no-setup --build-dir "$BUILD" --out "$OUT" 2>"$OUT/package.log") ||
  { tail -20 "$OUT/package.log"; fail "scripts/package.sh failed"; }
printf 'built %s (%s KiB) in %.1f s\n' "$(basename "$deb")" $(( $(stat -c %s "$deb") / 1024 )) \
  "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"

X=$OUT/root C=$OUT/control
dpkg-deb -x "$deb" "$X"
dpkg-deb -e "$deb" "$C"

# The files, where Debian expects them.
expected=(
  usr/sbin/driverd usr/sbin/workerd usr/bin/sluicectl
  lib/systemd/system/sluice-driverd.service lib/systemd/system/sluice-driverd@.service
  lib/systemd/system/sluice-workerd@.service
  etc/sluice/driverd.conf etc/sluice/workerd-1.conf etc/sluice/workerd-2.conf etc/sluice/sluicectl.conf
  usr/lib/sysusers.d/sluice.conf usr/lib/tmpfiles.d/sluice.conf
  usr/share/man/man8/driverd.8.gz usr/share/man/man8/workerd.8.gz usr/share/man/man1/sluicectl.1.gz
  usr/share/doc/sluice/README.md usr/share/doc/sluice/operations.md
  usr/share/doc/sluice/examples/three-hosts/host1/driverd.conf
  usr/include/sluice/plugin_api.h usr/lib/sluice/plugins/uppercase_plugin.so
  usr/share/sluice/gen-certs.sh
)
for f in "${expected[@]}"; do [ -f "$X/$f" ] || fail "missing /$f"; done
for f in usr/sbin/driverd usr/sbin/workerd usr/bin/sluicectl; do
  [ -x "$X/$f" ] || fail "/$f is not executable"
  ! readelf -S "$X/$f" | grep -q '\.symtab' || fail "/$f is not stripped"
done
! find "$X" -path '*/usr/local*' | grep -q . || fail "files under /usr/local"
echo "files: ${#expected[@]} expected present; $(find "$X" -type f | wc -l) in all"

# Every file under /etc is a conffile, and only those.
diff <(cd "$X" && find etc -type f | sed 's|^|/|' | sort) <(sort "$C/conffiles") ||
  fail "conffiles differ from the files under /etc"

# Depends: computed from the binaries (shlibdeps) plus what the scripts run.
depends=$(dpkg-deb -f "$deb" Depends)
for d in systemd procps libgrpc++1.51 libzookeeper-mt2 librdkafka1 libyaml-cpp0.7; do
  grep -q "$d" <<<"$depends" || fail "Depends lacks $d: $depends"
done
echo "Depends: $depends"

# Maintainer scripts: valid sh; nothing is enabled or started.
for s in postinst prerm postrm; do
  [ -x "$C/$s" ] || fail "no executable $s"
  sh -n "$C/$s" || fail "$s: syntax"
done
! grep -nE 'systemctl.*[[:space:]](start|enable|restart|try-restart|reload|reload-or-restart)([[:space:]]|$)' \
    "$C/postinst" ||
  fail "postinst starts or enables a unit"
! grep -q 'deb-systemd-invoke' "$C/postinst" || fail "postinst starts a unit"

# The postinst's effect, on the extracted tree.
mkdir -p "$X/etc"
touch "$X/etc/passwd" "$X/etc/group" "$X/etc/shadow" "$X/etc/gshadow"
DPKG_ROOT=$X sh "$C/postinst" configure >"$OUT/postinst.log" 2>&1 ||
  { cat "$OUT/postinst.log"; fail "postinst configure failed"; }
uid=$(awk -F: '$1 == "sluice" { print $3 }' "$X/etc/passwd")
gid=$(awk -F: '$1 == "sluice" { print $3 }' "$X/etc/group")
[ -n "$uid" ] && [ "$uid" -lt 1000 ] || fail "no sluice system user: $(cat "$X/etc/passwd")"
grep -q '^sluice:.*:/var/lib/sluice:/usr/sbin/nologin$' "$X/etc/passwd" ||
  fail "sluice's home or shell: $(grep '^sluice:' "$X/etc/passwd")"
for d in var/lib/sluice var/lib/sluice/output var/log/sluice; do
  [ "$(stat -c '%u:%g %a' "$X/$d")" = "$uid:$gid 750" ] ||
    fail "/$d is $(stat -c '%u:%g %a' "$X/$d"), not $uid:$gid 750"
done
for f in driverd.conf workerd-1.conf workerd-2.conf; do
  [ "$(stat -c '%u:%g %a' "$X/etc/sluice/$f")" = "0:$gid 640" ] ||
    fail "/etc/sluice/$f is $(stat -c '%u:%g %a' "$X/etc/sluice/$f")"
done
[ "$(stat -c '%a' "$X/etc/sluice/sluicectl.conf")" = 644 ] || fail "sluicectl.conf not 644"
# The shipped configs confine jobs to the shipped plugin and output dirs.
for f in driverd.conf workerd-1.conf workerd-2.conf; do
  grep -qx 'plugin-dirs = /usr/lib/sluice/plugins' "$X/etc/sluice/$f" || fail "$f: no plugin-dirs"
  grep -qx 'output-dirs = /var/lib/sluice/output' "$X/etc/sluice/$f" || fail "$f: no output-dirs"
done
# The development certificates of the shipped configuration: signed by the
# CA made with them, each daemon's key its own, admin's and the CA's root's.
T=$X/etc/sluice/tls
for n in driver-1 worker-1 worker-2 admin; do
  openssl verify -CAfile "$T/ca.pem" "$T/$n.pem" >/dev/null || fail "$n.pem does not verify against ca.pem"
done
for k in driver-1 worker-1 worker-2; do
  [ "$(stat -c '%u:%g %a' "$T/$k.key")" = "$uid:$gid 600" ] || fail "$k.key is $(stat -c '%u:%g %a' "$T/$k.key")"
done
for k in admin ca; do
  [ "$(stat -c '%u %a' "$T/$k.key")" = "0 600" ] || fail "$k.key is $(stat -c '%u %a' "$T/$k.key")"
done
openssl x509 -in "$T/worker-1.pem" -noout -ext subjectAltName | grep -q 'URI:sluice:role=worker' ||
  fail "worker-1.pem has no role"
# A second configure (an upgrade) keeps the administrator's certificates.
before=$(md5sum "$T/ca.pem")
DPKG_ROOT=$X sh "$C/postinst" configure 0.0.9 >>"$OUT/postinst.log" 2>&1 || fail "postinst configure (upgrade) failed"
[ "$(md5sum "$T/ca.pem")" = "$before" ] || fail "an upgrade replaced /etc/sluice/tls/ca.pem"
echo "postinst: user sluice ($uid:$gid), /var/lib/sluice, its output/ and /var/log/sluice 750, configs 640 root:sluice," \
  "development certificates in /etc/sluice/tls (daemon keys sluice's, admin's and the CA's root's)"
echo "PASS: $deb"
