// A modbus-serial ServerTCP for the interop suite, with its own encoding of every type and word order.
// Commands on stdin, one JSON object a line:
//   {"put": "holding"|"input", "address": 10, "type": "float32", "order": "CDAB", "value": 123.456}
//   {"bit": "coil"|"discrete", "address": 3, "value": true}
//   {"fail": 6}  (every read answers exception 6, device busy; {"fail": 0} ends it)
// Each is echoed with the registers the peer itself computed; a client's write is logged as
// {"written": "holding"|"coil", "fc": 5|6|15|16, "address": a, "values": [...]}.
// Addresses 900 and up answer exception 2 (illegal data address). "READY <port>" means it listens.
"use strict";
const ModbusRTU = require("modbus-serial");

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
const port = Number(args.port || 5020);
const SIZE = 1000;
const tables = { holding: new Array(SIZE).fill(0), input: new Array(SIZE).fill(0),
  coil: new Array(SIZE).fill(false), discrete: new Array(SIZE).fill(false) };
let failWith = 0;

const WIDTH = { int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, int64: 8, uint64: 8, float64: 8 };

function bigEndian(type, value) {
  const b = Buffer.alloc(WIDTH[type]);
  switch (type) {
    case "int16": b.writeInt16BE(value); break;
    case "uint16": b.writeUInt16BE(value); break;
    case "int32": b.writeInt32BE(value); break;
    case "uint32": b.writeUInt32BE(value); break;
    case "float32": b.writeFloatBE(value); break;
    case "int64": b.writeBigInt64BE(BigInt(value)); break;
    case "uint64": b.writeBigUInt64BE(BigInt(value)); break;
    case "float64": b.writeDoubleBE(value); break;
    default: throw new Error(`unknown type ${type}`);
  }
  return b;
}

// ABCD: big-endian words, big-endian bytes; CDAB: words swapped; BADC: bytes swapped in each word; DCBA: both
function registersOf(type, order, value) {
  const b = bigEndian(type, value);
  let words = [];
  for (let i = 0; i < b.length; i += 2) words.push([b[i], b[i + 1]]);
  if (order === "CDAB" || order === "DCBA") words = words.reverse();
  if (order === "BADC" || order === "DCBA") words = words.map(([hi, lo]) => [lo, hi]);
  return words.map(([hi, lo]) => hi * 256 + lo);
}

function check(address, length) {
  if (address + length > 900) throw { modbusErrorCode: 0x02, msg: "Illegal data address" };
  if (failWith) throw { modbusErrorCode: failWith, msg: "Injected exception" };
}

const vector = {
  getHoldingRegister: (a) => { check(a, 1); return tables.holding[a]; },
  getInputRegister: (a) => { check(a, 1); return tables.input[a]; },
  getMultipleHoldingRegisters: (a, n) => { check(a, n); return tables.holding.slice(a, a + n); },
  getMultipleInputRegisters: (a, n) => { check(a, n); return tables.input.slice(a, a + n); },
  getCoil: (a) => { check(a, 1); return tables.coil[a]; },
  getDiscreteInput: (a) => { check(a, 1); return tables.discrete[a]; },
  setRegister: (a, v) => {
    check(a, 1); tables.holding[a] = v;
    console.log(JSON.stringify({ written: "holding", fc: 6, address: a, values: [v] }));
  },
  setRegisterArray: (a, vs) => {
    check(a, vs.length); vs.forEach((v, i) => { tables.holding[a + i] = v; });
    console.log(JSON.stringify({ written: "holding", fc: 16, address: a, values: vs }));
  },
  setCoil: (a, v) => {
    check(a, 1); tables.coil[a] = v;
    console.log(JSON.stringify({ written: "coil", fc: 5, address: a, values: [v] }));
  },
  setCoilArray: (a, vs) => {
    check(a, vs.length); vs.forEach((v, i) => { tables.coil[a + i] = v; });
    console.log(JSON.stringify({ written: "coil", fc: 15, address: a, values: vs }));
  },
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 1 });
server.on("socketError", () => {});
server.on("initialized", () => console.log(`READY ${port}`));

require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.put) {
    const regs = registersOf(cmd.type, cmd.order || "ABCD", cmd.value);
    regs.forEach((r, i) => { tables[cmd.put][cmd.address + i] = r; });
    console.log(JSON.stringify({ ...cmd, registers: regs }));
  } else if (cmd.bit) {
    tables[cmd.bit][cmd.address] = Boolean(cmd.value);
    console.log(JSON.stringify(cmd));
  } else if ("fail" in cmd) {
    failWith = cmd.fail;
    console.log(JSON.stringify(cmd));
  }
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
