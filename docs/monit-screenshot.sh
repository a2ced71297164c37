#!/usr/bin/env bash
# Takes docs/monit.png, the README's screenshot of `corral monit`: a private corral home runs a
# few demo apps, tmux runs the dashboard at 100×30, `tmux capture-pane -e` takes the screen with
# its colours, tools/ansi2html draws it as HTML and headless Chromium (Debian's `chromium`)
# takes the PNG. Nothing is drawn by hand: the PNG is the terminal's content.
#
#   bash docs/monit-screenshot.sh [out.png]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/docs/monit.png}
for tool in tmux chromium node; do
	command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
WORK=$(mktemp -d)
export CORRAL_HOME=$WORK/home
SOCK=$WORK/tmux.sock
cleanup() {
	tmux -S "$SOCK" kill-server 2>/dev/null || true
	"$WORK/corral" kill >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
cd "$REPO"
go build -o "$WORK/corral" ./cmd/corral
C=$WORK/corral
mkdir -p "$WORK/apps"
cat >"$WORK/apps/worker.js" <<'JS'
let n = 0;
setInterval(() => {
  n++;
  console.log(`job ${n} done in ${(20 + (n * 37) % 180)}ms`);
  if (n % 4 === 0) console.error(`job ${n}: retrying the mail server (ETIMEDOUT)`);
}, 700);
JS
cat >"$WORK/apps/mailer.js" <<'JS'
console.log(`mailer ${process.pid} connecting`);
setTimeout(() => { console.error('Error: connect ECONNREFUSED 127.0.0.1:2525'); process.exit(1); }, 2500);
JS
PORT=0 "$C" start examples/node/app.js --name api -i 3 >/dev/null
"$C" start "$WORK/apps/worker.js" --name worker --namespace jobs >/dev/null
"$C" start "$WORK/apps/mailer.js" --name mailer --namespace jobs >/dev/null
"$C" start examples/node/crash.js --name nightly-report --no-autorestart >/dev/null
sleep 20 # history for the sparklines, a few mailer restarts
port=$("$C" logs api --nostream --lines 5 --raw | grep -o 'listening on [0-9]*' | head -1 | awk '{print $3}')
for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$port/" >/dev/null || true; done

tmux -S "$SOCK" -f /dev/null new-session -d -s shot -x 100 -y 30 "env CORRAL_HOME=$CORRAL_HOME TERM=xterm-256color $C monit"
sleep 2
tmux -S "$SOCK" send-keys -t shot o o o o o o # sort by memory…
tmux -S "$SOCK" send-keys -t shot O           # …largest first
tmux -S "$SOCK" send-keys -t shot /
tmux -S "$SOCK" send-keys -t shot -l work
tmux -S "$SOCK" send-keys -t shot Enter
sleep 0.5
tmux -S "$SOCK" send-keys -t shot Escape
sleep 4
tmux -S "$SOCK" capture-pane -e -p -t shot >"$WORK/screen.ansi"
tmux -S "$SOCK" send-keys -t shot Tab # the events pane
sleep 1
tmux -S "$SOCK" capture-pane -e -p -t shot >"$WORK/events.ansi"
shot() { # shot CAPTURE PNG
	go run ./tools/ansi2html -title "corral monit" <"$1" >"$WORK/page.html"
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
		--window-size=900,620 --screenshot="$2" "file://$WORK/page.html" 2>/dev/null
	echo "wrote $2"
}
shot "$WORK/screen.ansi" "$OUT"
shot "$WORK/events.ansi" "${OUT%.png}-events.png"
