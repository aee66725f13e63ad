#!/usr/bin/env bash
# Look at bpnet-eval as a person does: `score` on the bundled example in a real terminal (tmux) 80 and 200
# columns wide, and the report.html it writes, each rendered to a PNG by headless Chromium.
#
#   docs/screenshots/make.sh [OUT_DIR]        # default: docs/screenshots/
#
# Needs tmux and chromium (Debian: apt-get install tmux chromium) and the venv of the README (.venv with the
# plots extra). Writes terminal-80.png, terminal-200.png, report.png, and the report itself (report/, with
# its figures: look at them too) into OUT_DIR; docs/README.md shows the committed ones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)
bin="$repo/.venv/bin"
for tool in tmux chromium; do
  command -v "$tool" >/dev/null || { echo "make.sh: error: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$bin/bpnet-eval" ] || { echo "make.sh: error: no $bin/bpnet-eval: install as the README says" >&2; exit 2; }
work=$(mktemp -d)
profile=$(mktemp -d)  # a fresh Chromium profile for every run
session="bpnet-eval-shots-$$"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work" "$profile"' EXIT

chrome() {  # chrome URL PNG WIDTH HEIGHT: one headless screenshot, nothing fetched, nothing kept
  timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$3,$4" --screenshot="$2" "$1" >/dev/null 2>&1
}

terminal() {  # terminal COLUMNS: run score in a tmux window that wide; capture the pane with its colours
  local cols=$1
  tmux new-session -d -s "$session" -x "$cols" -y 60 "bash --noprofile --norc"
  mkdir -p "$work/$cols"
  for f in predictions.h5 observed.plus.bw observed.minus.bw; do ln -s "$repo/data/fixtures/$f" "$work/$cols/$f"; done
  tmux send-keys -t "$session" "cd '$work/$cols' && PATH='$bin':\$PATH PS1='$ ' && clear" Enter
  sleep 1  # the prompt is set and the screen cleared before the command is typed
  tmux send-keys -t "$session" "bpnet-eval score predictions.h5 observed.plus.bw observed.minus.bw; echo \"[exit \$?]\"" Enter
  for _ in $(seq 600); do  # up to 60 s
    tmux capture-pane -p -t "$session" | grep -q '^\[exit [0-9]*\]' && break
    sleep 0.1
  done
  tmux capture-pane -p -e -t "$session" > "$work/pane-$cols.ansi"
  tmux kill-session -t "$session"
  # the captured text and colours as HTML (rich, which bpnet-eval installs), then a PNG the size of the text
  "$bin/python" - "$work/pane-$cols.ansi" "$work/pane-$cols.html" "$cols" <<'EOF'
import sys

from rich.console import Console
from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from rich.text import Text

source, target, cols = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(source, encoding="utf-8").read().rstrip("\n").split("\n")
while lines and not lines[-1].strip():
    lines.pop()
console = Console(record=True, width=cols, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))
console.print(Text.from_ansi("\n".join(lines)), soft_wrap=True)
html = console.export_html(inline_styles=True, theme=DEFAULT_TERMINAL_THEME, code_format=(  # a light terminal
    "<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{{margin:0;background:#fff;color:#000}}"
    "pre{{margin:8px;font:13px/1.2 'DejaVu Sans Mono',monospace}}</style></head>"
    "<body><pre>{code}</pre></body></html>"))
open(target, "w", encoding="utf-8").write(html)
print(len(lines))
EOF
}

for cols in 80 200; do
  rows=$(terminal "$cols")
  width=$(( cols * 8 + 24 ))  # DejaVu Sans Mono at 13 px: 7.8 px a column, 15.6 px a line
  chrome "file://$work/pane-$cols.html" "$out/terminal-$cols.png" "$width" $(( rows * 16 + 24 ))
done
rm -rf "$out/report"
cp -r "$work/80/bpnet-eval-predictions" "$out/report"
chrome "file://$out/report/report.html" "$out/report.png" 1200 2400
echo "make.sh: wrote $out/terminal-80.png, $out/terminal-200.png, $out/report.png and $out/report/"
