#!/usr/bin/env bash
# guest_image_reproducible.sh — the guest image builder is reproducible.
#
# Usage (as registered with ctest):
#   guest_image_reproducible.sh <build-guest-image-path> <agent-binary> <cache-dir>
#
#   build-guest-image-path  guest-image/build-guest-image from the source tree
#   agent-binary            the built hull-agent (any ELF binary works)
#   cache-dir               kernel .deb cache, shared by both builds (e.g.
#                           build/guest-cache); downloaded into if empty
#
# Builds the image twice, into two fresh temp dirs, from the same inputs, and
# fails unless vmlinuz, initrd.img and manifest.json are byte-identical and
# manifest.json looks like valid JSON with the expected keys and checksums.
# Exit 0 = pass, 1 = fail, 77 = skipped (a required tool is not installed;
# register with SKIP_RETURN_CODE 77).
# Temp dirs are removed on exit.

set -uo pipefail
export LC_ALL=C

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }

[[ $# -eq 3 ]] || fail "usage: $0 <build-guest-image-path> <agent-binary> <cache-dir>"
builder=$1 agent=$2 cache=$3
[[ -x $builder ]] || fail "builder '$builder' is not an executable file"
[[ -f $agent ]] || fail "agent binary '$agent' does not exist"
for t in apt-get dpkg-deb cpio gzip cmp; do
  command -v "$t" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 \
    || skip "required tool '$t' not installed"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hull-guest-repro.XXXXXX") || fail "mktemp failed"
trap 'rm -rf -- "$tmp"' EXIT
mkdir -p -- "$cache" || fail "cannot create cache dir '$cache'"

for run in 1 2; do
  if ! "$builder" --agent "$agent" --out "$tmp/out$run" --cache "$cache" >"$tmp/log$run" 2>&1; then
    cat "$tmp/log$run" >&2
    fail "build $run failed (log above)"
  fi
done

for f in vmlinuz initrd.img manifest.json; do
  for run in 1 2; do
    [[ -s $tmp/out$run/$f ]] || fail "build $run did not produce a non-empty $f"
  done
  cmp -- "$tmp/out1/$f" "$tmp/out2/$f" || fail "$f differs between two builds from the same inputs"
done

# No scratch files left next to the outputs.
for run in 1 2; do
  extra=$(find "$tmp/out$run" -mindepth 1 ! -name vmlinuz ! -name initrd.img ! -name manifest.json -print)
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
           '"sha256"' '"size"' '"agent"' '"modules"' '"libraries"'; do
  grep -qF -- "$key" "$m" || fail "manifest.json lacks $key"
done
for f in vmlinuz initrd.img; do
  sum=$(sha256sum -- "$tmp/out1/$f" | cut -d' ' -f1)
  grep -qF -- "$sum" "$m" || fail "manifest.json does not record the sha256 of $f ($sum)"
done
grep -qF -- "$tmp" "$m" && fail "manifest.json contains a temp path"

# The initrd must hold /init and the module list.
listing=$(gzip -dc -- "$tmp/out1/initrd.img" | cpio -it --quiet 2>/dev/null) \
  || fail "initrd.img is not a gzip'd cpio archive"
grep -qx 'init' <<<"$listing" || fail "initrd.img has no /init"
grep -qx 'lib/modules/hull-modules.list' <<<"$listing" || fail "initrd.img has no lib/modules/hull-modules.list"

echo "PASS: two builds gave identical vmlinuz, initrd.img and manifest.json"
