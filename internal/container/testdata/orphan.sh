#!/bin/bash
# Orphans a short-lived grandchild (its parent subshell exits at once), records its pid, then waits.
( sleep 0.3 & echo $! > "$ORPHAN_PID_FILE" )
echo "orphan.sh started"
trap 'echo "orphan.sh got SIGINT"; exit 0' INT
while :; do sleep 0.05; done
