#!/usr/bin/env bash
# Installs the open emoji datasets that ravl's tune benchmark and docs use, from npm,
# into .data/npm (git-ignored). Needs npm; without it (or offline) the parts that use them skip.
#   emoji-datasource-google   Noto Emoji images (Apache-2.0), ~1,900 emoji, names   (~80 MB)
#   emoji-datasource-twitter  Twemoji images (CC-BY 4.0), the same emoji            (~70 MB)
#   cldr-annotations-full     emoji names and keywords in ~170 locales (Unicode licence, ~56 MB)
# openmoji (CC-BY-SA 4.0) ships SVG only; see docs/adaptation.md for why it is left out.
set -u
dest="${RAVL_DATA:-$(cd "$(dirname "$0")/.." && pwd)/.data}/npm"
want=()
[ -f "$dest/node_modules/emoji-datasource-google/emoji.json" ] || want+=(emoji-datasource-google@16)
[ -f "$dest/node_modules/emoji-datasource-twitter/emoji.json" ] || want+=(emoji-datasource-twitter@16)
[ -d "$dest/node_modules/cldr-annotations-full/annotations" ] || want+=(cldr-annotations-full@48)
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "setup-data: npm not found; cannot install ${want[*]} (emoji benchmarks are skipped)" >&2
  exit 0
fi
mkdir -p "$dest"
echo "setup-data: installing ${want[*]} into $dest" >&2
npm install --silent --no-audit --no-fund --ignore-scripts --no-save --prefix "$dest" "${want[@]}" >/dev/null 2>&1 \
  || echo "setup-data: npm install ${want[*]} failed; emoji benchmarks are skipped" >&2
exit 0
