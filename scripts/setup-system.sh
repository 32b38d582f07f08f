#!/usr/bin/env bash
# Installs the Debian packages ravl's demo and tests use, when apt is available and we are root.
# Missing packages only degrade optional parts (the demo skips the stamps, OCR tests skip), so
# failures here are reported but never fatal.
set -u
want=()
[ -d /usr/share/tuxpaint/stamps ] || want+=(tuxpaint-stamps-default)
command -v tesseract >/dev/null 2>&1 || want+=(tesseract-ocr tesseract-ocr-eng)
# other scripts for `ravl read --lang chi_sim|jpn|deu|fra|...` (text in images meets multilingual queries)
for lang in chi-sim jpn deu fra spa; do
  dpkg -s "tesseract-ocr-$lang" >/dev/null 2>&1 || want+=("tesseract-ocr-$lang")
done
# offline translation for `ravl read --translate-to` (Debian's Apertium and a few language pairs) and
# WordNet, which `ravl ask` uses to check that an answer is entailed by its evidence
command -v apertium >/dev/null 2>&1 || want+=(apertium)
for pair in apertium-eng-spa apertium-eng-cat apertium-fr-es wordnet-base; do
  dpkg -s "$pair" >/dev/null 2>&1 || want+=("$pair")
done
# a CJK font (4.5 MB) so the OCR tests can render Chinese and Japanese signs to read
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || want+=(fonts-wqy-microhei)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v java >/dev/null 2>&1 || want+=(default-jre-headless)
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "setup-system: cannot install ${want[*]} (needs apt-get as root); the parts that use them are skipped" >&2
  exit 0
fi
echo "setup-system: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
  || echo "setup-system: apt-get install ${want[*]} failed; the parts that use them are skipped" >&2
exit 0
