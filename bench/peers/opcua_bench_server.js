// Bench-mode node-opcua server: MACHINES folders x SIGNALS numeric variables that change at a paced
// high rate, for bench.gateway --device peer (the interop suite's server is tests/gateway/interop).
//   node opcua_bench_server.js --port=P --machines=40 --signals=Speed:float,GoodCount:int,... --counter=PATH
// Prints READY {"port", "ns", "endpoint", "machines"}; then commands, one JSON line each:
//   {"cmd": "drive", "rate": null|samples_per_s, "seconds": s, "window": n}
//     sets every variable in turn to a new value stamped by the server's clock (a change each time), as fast as possible
//     but at most `window` sets ahead of what the consumer has taken (--counter), or paced at `rate`;
//     answers {"drive": {"first_publish", "last_publish", "produced", "window_waits"}}
//   {"cmd": "stop"}
// Server settings that differ from node-opcua's defaults, and why:
//   serverCapabilities.minSupportedSampleRate = 0: with the default (100 ms) node-opcua coalesces the
//     changes of an exception-based item to one per 100 ms; 0 makes it deliver every change, which is
//     what the gateway is asked to store here (and what the asyncua plant does).
"use strict";
const opcua = require("node-opcua");
const { parseArgs, counterReader, wallSeconds, sleep, yieldNow, serve } = require("./common");

const args = parseArgs(process.argv);
const port = Number(args.port || 4840);
const nMachines = Number(args.machines || 40);
const signals = (args.signals || "Speed:float,GoodCount:int").split(",").map((s) => s.split(":"));
const consumed = counterReader(args.counter);
const CHUNK = 50;  // sets between two looks at the clock and the counter (as the Python plant does)

async function main() {
  const server = new opcua.OPCUAServer({
    port, resourcePath: "/shopfloor", allowAnonymous: true,
    buildInfo: { productName: "shopfloor-bench-node-opcua" },
    serverCapabilities: { minSupportedSampleRate: 0 },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.getOwnNamespace();
  const objects = server.engine.addressSpace.rootFolder.objects;
  const machines = [];
  const keys = [];  // [variable, DataType, is int]
  for (let m = 0; m < nMachines; m++) {
    const machine = `m${String(m).padStart(2, "0")}`;
    machines.push(machine);
    const folder = ns.addFolder(objects, { browseName: machine, nodeId: `s=${machine}` });
    for (const [signal, kind] of signals) {
      const type = kind === "int" ? opcua.DataType.UInt32 : opcua.DataType.Double;
      const variable = ns.addVariable({
        componentOf: folder, browseName: signal, nodeId: `s=${machine}.${signal}`, dataType: type,
        minimumSamplingInterval: 0,  // exception-based: a change is reported when it is set
        value: new opcua.Variant({ dataType: type, value: 0 }),
      });
      keys.push([variable, type, kind === "int"]);
    }
  }
  await server.start();
  console.log(`READY ${JSON.stringify({ port, ns: ns.index, endpoint: `opc.tcp://127.0.0.1:${port}/shopfloor`,
    machines })}`);

  let next = 0, round = 0;

  async function drive({ rate, seconds, window }) {
    const base = consumed();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const first = wallSeconds();
    let produced = 0, waits = 0;
    while (performance.now() < end) {
      if (rate) {
        const delay = t0 + ((produced + CHUNK) / rate) * 1000 - performance.now();
        if (delay > 0) await sleep(delay);
      } else {
        while (produced + CHUNK - (consumed() - base) > window && performance.now() < end) {
          waits++;
          await sleep(1);
        }
        if (performance.now() >= end) break;
      }
      for (let k = 0; k < CHUNK; k++) {
        const [variable, type, isInt] = keys[next];
        const value = (round + 1) % 1000000;
        // no timestamp given: node-opcua stamps the set with its own clock (hrtime, sub-millisecond
        // picoseconds), so two sets of one variable never share a (tag, source timestamp)
        variable.setValueFromSource(new opcua.Variant({ dataType: type, value: isInt ? value : value + 0.5 }),
          opcua.StatusCodes.Good);
        if (++next === keys.length) { next = 0; round++; }
      }
      produced += CHUNK;
      await yieldNow();  // let the server publish, even when behind a paced schedule
    }
    return { first_publish: first, last_publish: wallSeconds(), produced, window_waits: waits };
  }

  serve({ drive }, () => server.shutdown(0));
}

main().catch((e) => { console.error(e); process.exit(1); });
