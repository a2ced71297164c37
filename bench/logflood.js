// Node log flooder for bench/logs.sh: the same lines as bench/cmd/logflood (`write`), written the way
// Node apps write logs. Usage: node logflood.js N MODE STAMP DONE [hold]
//   MODE log   console.log per line (what most apps under PM2 do; one write(2) per line on a pipe)
//   MODE batch lines gathered into 64 KiB chunks, one process.stdout.write each (a buffered logger,
//              such as pino with a destination buffer), waiting for 'drain' when the stream asks to
// STAMP receives the start time (Unix ns) before the first line, DONE "end_ns lines_per_s" after the
// last line was handed to the stream (and the stream drained). With "hold" the process then stays up
// until SIGTERM/SIGINT.
"use strict";
const fs = require("fs");
const [n, mode, stamp, done, hold] = [Number(process.argv[2] || 1e6), process.argv[3] || "log", process.argv[4], process.argv[5], process.argv[6] === "hold"];
const size = 100;
const filler = "x".repeat(size - 15); // "#o " + 10 digits + " " + filler (no newline: console.log adds it)
const nowNs = () => process.hrtime.bigint() - t0h + t0;
const t0h = process.hrtime.bigint();
const t0 = BigInt(Date.now()) * 1000000n;
const start = nowNs();
if (stamp) fs.writeFileSync(stamp, start + "\n");
const pad = (i) => String(i).padStart(10, "0");
function finish() {
  const end = nowNs();
  if (done) fs.writeFileSync(done, `${end} ${Math.round(n / (Number(end - start) / 1e9))}\n`);
  if (hold) {
    setInterval(() => {}, 1 << 30);
    const quit = () => process.exit(0);
    process.on("SIGTERM", quit).on("SIGINT", quit);
  }
}
if (mode === "log") {
  for (let i = 0; i < n; i++) console.log("#o " + pad(i) + " " + filler);
  // console.log on a pipe is synchronous on Linux; on a file too.
  finish();
} else {
  let i = 0;
  const chunkLines = Math.floor(65536 / size);
  const pump = () => {
    while (i < n) {
      let s = "";
      for (let k = 0; k < chunkLines && i < n; k++, i++) s += "#o " + pad(i) + " " + filler + "\n";
      // false asks for 'drain'; PM2's cluster mode replaces process.stdout.write with a function
      // returning undefined, after which no 'drain' comes.
      if (process.stdout.write(s) === false) return process.stdout.once("drain", pump);
    }
    if (process.stdout.writableLength > 0) return process.stdout.once("drain", finish);
    finish();
  };
  pump();
}
