// What both bench peers share: arguments, the consumer's counter, the stdin command loop.
// The bench (bench/gateway_peers.py) writes how many samples its consumer has taken into an
// 8-byte little-endian file (--counter=PATH); a device paced "as fast as possible within a window"
// reads it back, as the Python plant reads its shared multiprocessing counter.
"use strict";
const fs = require("fs");

function parseArgs(argv) {
  return Object.fromEntries(argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
}

function counterReader(path) {
  if (!path) return () => 0;
  const fd = fs.openSync(path, "r");
  const buf = Buffer.alloc(8);
  return () => {
    fs.readSync(fd, buf, 0, 8, 0);
    return Number(buf.readBigInt64LE(0));
  };
}

// wall-clock seconds with sub-millisecond resolution (Date.now() has only ms)
function wallSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const yieldNow = () => new Promise((resolve) => setImmediate(resolve));

// one JSON command a line on stdin; handlers answer one JSON line on stdout; errors end the process
function serve(handlers, onStop) {
  const rl = require("readline").createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
      if (cmd.cmd === "stop") { await onStop(); process.exit(0); }
      const handler = handlers[cmd.cmd];
      if (!handler) throw new Error(`unknown cmd ${JSON.stringify(cmd.cmd)}`);
      console.log(JSON.stringify({ [cmd.cmd]: await handler(cmd) }));
    } catch (e) {
      console.error(`bench peer: command ${line} failed: ${e && e.stack ? e.stack : e}`);
      process.exit(3);
    }
  });
  rl.on("close", async () => { await onStop(); process.exit(0); });  // the bench went away
  process.on("SIGTERM", async () => { await onStop(); process.exit(0); });
}

module.exports = { parseArgs, counterReader, wallSeconds, sleep, yieldNow, serve };
