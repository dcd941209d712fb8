// A node-opcua server for the interop suite: folders, variables of many types, a bad status,
// optional Basic256Sha256 + username, optional --uri/--extra-ns namespace layout. Commands on stdin, one JSON object a line:
//   {"set": "Press1.Temperature", "value": 20.5, "ts": "2026-01-01T00:00:00.123Z", "status": "Good"}
// Every value set is echoed on stdout as {"set": name, "value": ..., "ts": ..., "status": ...}
// so the test asserts against what the peer itself logged. "READY <port>" means it listens.
"use strict";
const path = require("path");
const opcua = require("node-opcua");

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
const port = Number(args.port || 4840);

const TYPES = {
  Double: opcua.DataType.Double, Float: opcua.DataType.Float, Int16: opcua.DataType.Int16,
  UInt16: opcua.DataType.UInt16, Int32: opcua.DataType.Int32, UInt32: opcua.DataType.UInt32,
  Boolean: opcua.DataType.Boolean, String: opcua.DataType.String, Byte: opcua.DataType.Byte,
};

// name -> [folder, browse name, data type, initial value]
const VARIABLES = [
  ["Press1", "Temperature", "Double", 20.0],
  ["Press1", "Pressure", "Float", 1.5],
  ["Press1", "Count", "Int32", 0],
  ["Press1", "Running", "Boolean", false],
  ["Press1", "Recipe", "String", "A"],
  ["Press1", "Setpoint", "UInt16", 100],
  ["Press2", "Offset", "Int16", -3],
  ["Press2", "Total", "UInt32", 7],
  ["Press2", "Level", "Byte", 9],
  ["Press2", "Speed", "Double", 0.0],
  ["Press2", "Profile", "Double", [1.5, 2.5, 3.5, 4.5]],  // an array variable (ValueRank 1)
  ["Press2", "Counts", "UInt16", [0, 0, 0]],
];

function variantOf(type, value) {
  return Array.isArray(value)
    ? new opcua.Variant({ dataType: type, arrayType: opcua.VariantArrayType.Array, value })
    : new opcua.Variant({ dataType: type, value });
}

function ArrayLike(v) {
  return Array.isArray(v) || ArrayBuffer.isView(v);  // node-opcua keeps numeric arrays as typed arrays
}

function parseStatus(name) {
  return name ? opcua.StatusCodes[name] : opcua.StatusCodes.Good;
}

async function main() {
  const options = {
    port,
    resourcePath: "/shopfloor",
    buildInfo: { productName: "shopfloor-interop-node-opcua" },
    serverCertificateManager: undefined,
    allowAnonymous: !args.user,
  };
  if (args.pki) {
    const certificateManager = new opcua.OPCUACertificateManager({ rootFolder: path.join(args.pki, "server"),
      automaticallyAcceptUnknownCertificate: true });
    await certificateManager.initialize();
    options.serverCertificateManager = certificateManager;
    options.userCertificateManager = new opcua.OPCUACertificateManager({ rootFolder: path.join(args.pki, "user"),
      automaticallyAcceptUnknownCertificate: true });
    await options.userCertificateManager.initialize();
  }
  if (args.secure) {
    options.securityPolicies = [opcua.SecurityPolicy.Basic256Sha256];
    options.securityModes = [opcua.MessageSecurityMode.SignAndEncrypt, opcua.MessageSecurityMode.Sign];
  }
  if (args.user) {
    options.userManager = {
      isValidUser: (user, password) => user === args.user && password === args.password,
    };
  }
  const server = new opcua.OPCUAServer(options);
  await server.initialize();
  // --uri: the variables live in a namespace of that URI, registered after --extra-ns others, so a
  // restart with another --extra-ns gives the same URI another index (as a reconfigured server does)
  const addressSpace = server.engine.addressSpace;
  let ns = addressSpace.getOwnNamespace();
  if (args.uri) {
    for (let i = 0; i < Number(args["extra-ns"] || 0); i++) addressSpace.registerNamespace(`urn:shopfloor:filler:${i}`);
    ns = addressSpace.registerNamespace(args.uri);
  }
  const objects = server.engine.addressSpace.rootFolder.objects;
  let fromStdin = false;
  const folders = {};
  const nodes = {};
  for (const [folder, name, type, initial] of VARIABLES) {
    if (!folders[folder]) {
      folders[folder] = ns.addFolder(objects, { browseName: folder, nodeId: `s=${folder}` });
    }
    const id = `${folder}.${name}`;
    const array = Array.isArray(initial);
    nodes[id] = ns.addVariable({
      componentOf: folders[folder], browseName: name, nodeId: `s=${id}`, dataType: TYPES[type],
      accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
      valueRank: array ? 1 : -1, arrayDimensions: array ? [initial.length] : null,
      value: variantOf(TYPES[type], initial),
    });
    nodes[id].on("value_changed", (dv) => {
      if (fromStdin) return;
      // a write from a client: log it as the peer saw it
      console.log(JSON.stringify({ written: id, value: dv.value.value }));
    });
  }
  await server.start();
  console.log(`READY ${port} ns=${ns.index} uri=${ns.namespaceUri}`);

  const rl = require("readline").createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const cmd = JSON.parse(line);
    if (cmd.stop) {
      server.shutdown(0).then(() => process.exit(0));
      return;
    }
    const node = nodes[cmd.set];
    const ts = cmd.ts ? new Date(cmd.ts) : new Date();
    const variant = variantOf(node.getBasicDataType(), cmd.value);
    fromStdin = true;
    try {
      node.setValueFromSource(variant, parseStatus(cmd.status), ts);
    } finally {
      fromStdin = false;
    }
    const now = node.readValue().value.value;
    console.log(JSON.stringify({ set: cmd.set, value: ArrayLike(now) ? Array.from(now) : now, ts: ts.toISOString(),
      status: node.readValue().statusCode.name }));
  });
  process.on("SIGTERM", () => server.shutdown(0).then(() => process.exit(0)));
}

main().catch((e) => { console.error(e); process.exit(1); });
