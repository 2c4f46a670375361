// usp-js (a third-party USP controller library) installs, starts, stops and uninstalls a
// deployment unit on berthd: InstallDU and Uninstall as async operates (usp-js waits for
// their OperationComplete), a subscription to DUStateChange!, SetRequestedState as a
// sync operate.
//
// Environment: USPJS_NODE_DIR, BROKER_PORT, AGENT_ID, AGENT_TOPIC, CONTROLLER_ID,
// CONTROLLER_TOPIC, APP_URL (the image archive), HOST_DIR (a directory the app writes
// "1.0.0 <greeting>" into, below the ExecEnv's HostObject prefixes). Exit 0 when every
// step passed, 1 otherwise; each step prints one line.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
};

const require = createRequire(path.join(env("USPJS_NODE_DIR"), "package.json"));
const connect = require("usp-js").default;

let failures = 0;
const check = (name, ok, detail) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : ": " + JSON.stringify(detail)}`);
  if (!ok) failures++;
};
const withTimeout = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))]);
const text = (v) => JSON.stringify(v);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Polls fn until it returns something truthy (or the timeout passes; then the last value).
const poll = async (fn, ms) => {
  const end = Date.now() + ms;
  let v;
  while (Date.now() < end) {
    v = await fn();
    if (v) return v;
    await pause(100);
  }
  return v;
};

const usp = await withTimeout(
  connect(
    {
      host: "127.0.0.1",
      port: Number(env("BROKER_PORT")),
      protocol: "mqtt",
      fromId: env("CONTROLLER_ID"),
      toId: env("AGENT_ID"),
      publishEndpoint: env("AGENT_TOPIC"),
      subscribeEndpoint: env("CONTROLLER_TOPIC"),
    },
    { onError: (err) => console.error("usp-js error:", err) },
  ),
  10000,
  "connect",
);

const step = async (name, fn, ms = 30000) => {
  try {
    await withTimeout(fn(), ms, name);
  } catch (e) {
    check(name, false, e && (e.message || e));
  }
};

const events = [];
let clearEvents = async () => {};
await step("subscribe to DUStateChange!", async () => {
  clearEvents = await usp.subscribe(
    { id: "uspjs-du", notif: "Event", reference: "Device.SoftwareModules.DUStateChange!" },
    (msg) => events.push(msg),
  );
  check("subscribe to DUStateChange!", true);
});

const euStatus = async (eu) => text(await usp.get(`${eu}Status`));
let du = null;
let eu = null;

await step("InstallDU (async operate) completes with the DU's version", async () => {
  const [install, cleanup] = await usp.operate("Device.SoftwareModules.InstallDU()", { ID: "uspjs-install", commandKey: "uspjs-install" });
  const out = await install({
    URL: env("APP_URL"),
    ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1",
    "EnvVariable.1.Key": "GREETING",
    "EnvVariable.1.Value": "usp-js",
    "HostObject.1.Source": env("HOST_DIR"),
    "HostObject.1.Destination": "/out",
    "HostObject.1.Options": "rw",
    ShutdownDelay: "3",
  });
  await cleanup();
  check("InstallDU (async operate) completes with the DU's version", text(out).includes("1.0.0"), out);
}, 90000);

await step("DUStateChange! Installed arrives", async () => {
  const got = await poll(() => events.length >= 1, 10000);
  check("DUStateChange! Installed arrives", got && text(events[0]).includes("Installed") && text(events[0]).includes("Install"), events);
  const dus = await usp.instances("Device.SoftwareModules.DeploymentUnit.");
  const eus = await usp.instances("Device.SoftwareModules.ExecutionUnit.");
  du = (text(dus).match(/Device\.SoftwareModules\.DeploymentUnit\.\d+\./) || [null])[0];
  eu = (text(eus).match(/Device\.SoftwareModules\.ExecutionUnit\.\d+\./) || [null])[0];
  check("the DU and its EU are listed", du !== null && eu !== null, { dus, eus });
});

await step("SetRequestedState(Active) starts the EU and its process writes its marker", async () => {
  const [start] = await usp.operate(`${eu}SetRequestedState()`, { isAsync: false });
  await start({ RequestedState: "Active" });
  const active = await poll(async () => (await euStatus(eu)).includes("Active"), 20000);
  const marker = path.join(env("HOST_DIR"), "ran");
  const written = await poll(() => fs.existsSync(marker) && fs.readFileSync(marker, "utf8") === "1.0.0 usp-js\n", 20000);
  check("SetRequestedState(Active) starts the EU and its process writes its marker", active && written, await euStatus(eu));
});

await step("SetRequestedState(Idle) stops it", async () => {
  const [stop] = await usp.operate(`${eu}SetRequestedState()`, { isAsync: false });
  await stop({ RequestedState: "Idle" });
  const idle = await poll(async () => (await euStatus(eu)).includes("Idle"), 20000);
  check("SetRequestedState(Idle) stops it", idle, await euStatus(eu));
});

await step("Uninstall (async operate) removes the DU and its EU", async () => {
  // usp-js names its OperationComplete subscription after the command path unless given an
  // ID; for a DU's command that name is longer than the 64 characters TR-181 allows.
  const [uninstall, cleanup] = await usp.operate(`${du}Uninstall()`, { ID: "uspjs-uninstall", commandKey: "uspjs-uninstall" });
  await uninstall({});
  await cleanup();
  const gone = await poll(() => events.length >= 2, 10000);
  const dus = await usp.instances("Device.SoftwareModules.DeploymentUnit.");
  const eus = await usp.instances("Device.SoftwareModules.ExecutionUnit.");
  check("DUStateChange! Uninstalled arrives", gone && text(events[1]).includes("Uninstalled"), events);
  check("Uninstall (async operate) removes the DU and its EU", !/DeploymentUnit\.\d/.test(text(dus)) && !/ExecutionUnit\.\d/.test(text(eus)), { dus, eus });
}, 60000);

await clearEvents();
await usp.disconnect();
console.log(failures === 0 ? "all usp-js software module steps passed" : `${failures} usp-js step(s) failed`);
process.exit(failures === 0 ? 0 : 1);
