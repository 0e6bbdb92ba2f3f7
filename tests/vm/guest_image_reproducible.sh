#!/usr/bin/env bash
# guest_image_reproducible.sh — the guest image builder is reproducible.
#
# Usage (as registered with ctest):
#   guest_image_reproducible.sh <build-guest-image-path> <agent-binary> <init-binary> <cache-dir>
#
#   build-guest-image-path  guest-image/build-guest-image from the source tree
#   agent-binary            the built hull-agent (any ELF binary works)
#   init-binary             the built hull-init (static)
#   cache-dir               kernel .deb cache, shared by both builds (e.g.
#                           build/guest-cache); downloaded into if empty
#
# Builds the image twice, into two fresh temp dirs, from the same inputs, and
# fails unless vmlinuz, initrd.img, root.erofs and manifest.json are byte-identical and
# manifest.json looks like valid JSON with the expected keys and checksums.
# Exit 0 = pass, 1 = fail, 77 = skipped (a required tool is not installed;
# register with SKIP_RETURN_CODE 77).
# Temp dirs are removed on exit.

set -uo pipefail
export LC_ALL=C

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }

[[ $# -eq 4 ]] || fail "usage: $0 <build-guest-image-path> <agent-binary> <init-binary> <cache-dir>"
builder=$1 agent=$2 init=$3 cache=$4
[[ -x $builder ]] || fail "builder '$builder' is not an executable file"
[[ -f $agent ]] || fail "agent binary '$agent' does not exist"
[[ -f $init ]] || fail "init binary '$init' does not exist"
for t in apt-get dpkg-deb cpio gzip cmp mkfs.erofs kmod; do
  command -v "$t" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 \
    || skip "required tool '$t' not installed"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hull-guest-repro.XXXXXX") || fail "mktemp failed"
trap 'rm -rf -- "$tmp"' EXIT
mkdir -p -- "$cache" || fail "cannot create cache dir '$cache'"

for run in 1 2; do
  if ! "$builder" --agent "$agent" --init "$init" --out "$tmp/out$run" --cache "$cache" >"$tmp/log$run" 2>&1; then
    cat "$tmp/log$run" >&2
    fail "build $run failed (log above)"
  fi
done

for f in vmlinuz initrd.img root.erofs manifest.json; do
  for run in 1 2; do
    [[ -s $tmp/out$run/$f ]] || fail "build $run did not produce a non-empty $f"
  done
  cmp -- "$tmp/out1/$f" "$tmp/out2/$f" || fail "$f differs between two builds from the same inputs"
done

# No scratch files left next to the outputs.
for run in 1 2; do
  extra=$(find "$tmp/out$run" -mindepth 1 ! -name vmlinuz ! -name initrd.img ! -name root.erofs ! -name manifest.json -print)
  [[ -z $extra ]] || fail "build $run left extra files: $extra"
done

# manifest.json: valid JSON with the expected content.
m="$tmp/out1/manifest.json"
if command -v python3 >/dev/null 2>&1 && python3 -c 'import json' >/dev/null 2>&1; then
  python3 -m json.tool "$m" >/dev/null || fail "manifest.json is not valid JSON"
elif command -v jq >/dev/null 2>&1; then
  jq empty "$m" || fail "manifest.json is not valid JSON"
else
  # Coarse check: one object, balanced brackets and quotes.
  [[ $(head -c1 "$m") == '{' ]] || fail "manifest.json does not start with '{'"
  [[ $(tail -n1 "$m") == '}' ]] || fail "manifest.json does not end with '}'"
  body=$(tr -d '\n' <"$m")
  q=${body//[^\"]/}
  (( ${#q} % 2 == 0 )) || fail "manifest.json has unbalanced quotes"
  o=${body//[^\{]/} c=${body//[^\}]/}
  (( ${#o} == ${#c} )) || fail "manifest.json has unbalanced braces"
  o=${body//[^\[]/} c=${body//[^\]]/}
  (( ${#o} == ${#c} )) || fail "manifest.json has unbalanced brackets"
fi
for key in '"kernel"' '"package"' '"version"' '"release"' '"vmlinuz"' '"initrd.img"' \
           '"sha256"' '"size"' '"agent"' '"modules"' '"libraries"' '"root.erofs"' '"boot_modules"'; do
  grep -qF -- "$key" "$m" || fail "manifest.json lacks $key"
done
for f in vmlinuz initrd.img root.erofs; do
  sum=$(sha256sum -- "$tmp/out1/$f" | cut -d' ' -f1)
  grep -qF -- "$sum" "$m" || fail "manifest.json does not record the sha256 of $f ($sum)"
done
grep -qF -- "$tmp" "$m" && fail "manifest.json contains a temp path"

# The initrd holds /init (hull-init) and the boot module list, and no agent.
listing=$(gzip -dc -- "$tmp/out1/initrd.img" | cpio -it --quiet 2>/dev/null) \
  || fail "initrd.img is not a gzip'd cpio archive"
grep -qx 'init' <<<"$listing" || fail "initrd.img has no /init"
grep -qx 'lib/modules/hull-boot-modules.list' <<<"$listing" || fail "initrd.img has no lib/modules/hull-boot-modules.list"
grep -q 'libgrpc' <<<"$listing" && fail "initrd.img holds the agent's libraries (they belong on root.erofs)"

# root.erofs: padded to 2 MiB; erofs's magic at offset 1024.
size=$(stat -c %s -- "$tmp/out1/root.erofs")
(( size % (2 * 1024 * 1024) == 0 )) || fail "root.erofs ($size bytes) is not padded to 2 MiB"
magic=$(od -An -tx4 -j1024 -N4 -- "$tmp/out1/root.erofs" | tr -d ' ')
[[ $magic == e0f5e1e2 ]] || fail "root.erofs has no erofs superblock (magic $magic)"
if command -v fsck.erofs >/dev/null 2>&1; then
  fsck.erofs -- "$tmp/out1/root.erofs" >/dev/null 2>&1 || fail "fsck.erofs rejects root.erofs"
fi

echo "PASS: two builds gave identical vmlinuz, initrd.img, root.erofs and manifest.json"
