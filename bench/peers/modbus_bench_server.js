// Bench-mode modbus-serial ServerTCP: REGISTERS uint16 holding registers whose values change on
// every read (each FC3 answer carries new values), for bench.gateway --device peer.
//   node modbus_bench_server.js --port=P --registers=100
// Prints READY {"port", "registers"}; then commands, one JSON line each:
//   {"cmd": "stats"} answers {"stats": {"reads": FC3 reads served, "registers": registers served}}
//   {"cmd": "stop"}
// A poll is a round trip, so the client sets the pace; nothing here is paced.
"use strict";
const ModbusRTU = require("modbus-serial");
const { parseArgs, serve } = require("./common");

const args = parseArgs(process.argv);
const port = Number(args.port || 5020);
const nRegisters = Number(args.registers || 100);
let reads = 0, served = 0;

const vector = {
  getHoldingRegister: (a) => (1000 + a + reads) & 0xffff,
  getMultipleHoldingRegisters: (a, n) => {
    if (a + n > nRegisters) throw { modbusErrorCode: 0x02, msg: "Illegal data address" };
    reads++;
    served += n;
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = (1000 + a + i + reads) & 0xffff;
    return out;
  },
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 1 });
server.on("socketError", () => {});  // a client hanging up mid-request (the bench stopping a source)
server.on("initialized", () => {
  console.log(`READY ${JSON.stringify({ port, registers: nRegisters })}`);
});

serve({ stats: () => ({ reads, registers: served }) }, () => new Promise((resolve) => server.close(resolve)));
