// usp-js (a third-party USP controller library) talking to berthd through mosquitto:
// MQTT 3.1.1, no reply-to, requests on the agent's topic, answers expected on the
// topic berthd has configured for this controller.
//
// Environment: USPJS_NODE_DIR (where usp-js is installed), BROKER_PORT, AGENT_ID,
// AGENT_TOPIC, CONTROLLER_ID, CONTROLLER_TOPIC. Exit 0 when every step passed, 1
// otherwise; each step prints one line.
import { createRequire } from "node:module";
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

const step = async (name, fn) => {
  try {
    await withTimeout(fn(), 10000, name);
  } catch (e) {
    check(name, false, e && (e.message || e));
  }
};

await step("get Device.DeviceInfo.ModelName", async () => {
  const v = await usp.get("Device.DeviceInfo.ModelName");
  check("get Device.DeviceInfo.ModelName", text(v).includes("berth demo gateway"), v);
});

await step("get Device.DeviceInfo.", async () => {
  const v = await usp.get("Device.DeviceInfo.");
  check("get Device.DeviceInfo.", v && v.Manufacturer === "berth" && v.SerialNumber === "0001", v);
});

await step("set then get", async () => {
  await usp.set("Device.DeviceInfo.FriendlyName", "set by usp-js");
  const v = await usp.get("Device.DeviceInfo.FriendlyName");
  check("set then get", text(v).includes("set by usp-js"), v);
});

let added = null;
await step("add", async () => {
  added = await usp.add("Device.LocalAgent.Subscription.", {
    ID: "uspjs-1",
    NotifType: "ValueChange",
    ReferenceList: "Device.DeviceInfo.FriendlyName",
  });
  check("add", typeof added === "string" && /^Device\.LocalAgent\.Subscription\.\d+\.$/.test(added), added);
});

await step("instances", async () => {
  const v = await usp.instances("Device.LocalAgent.Subscription.");
  check("instances", added !== null && text(v).includes(added), v);
});

await step("supportedDM", async () => {
  const v = await usp.supportedDM("Device.LocalAgent.Subscription.", {
    firstLevelOnly: true,
    returnCommands: true,
    returnEvents: true,
    returnParams: true,
  });
  check("supportedDM", text(v).includes("Device.LocalAgent.Subscription.{i}.") && text(v).includes("NotifType"), v);
});

await step("supportedProto", async () => {
  const v = await usp.supportedProto("1.0,1.1,1.2,1.3,1.4");
  check("supportedProto", text(v).includes("1.4"), v);
});

await step("del", async () => {
  await usp.del(added);
  const v = await usp.instances("Device.LocalAgent.Subscription.");
  check("del", !text(v).includes(added), v);
});

await step("get of an unknown path is rejected with 7026", async () => {
  try {
    const v = await usp.get("Device.NoSuchObject.");
    check("get of an unknown path is rejected with 7026", false, v);
  } catch (e) {
    check("get of an unknown path is rejected with 7026", text(e).includes("7026"), e);
  }
});

await step("operate (sync)", async () => {
  const [cmd] = await usp.operate(env("ONBOARD_COMMAND"), { isAsync: false });
  const v = await cmd();
  check("operate (sync)", v !== undefined, v);
});

await step("subscribe and receive a ValueChange", async () => {
  let resolveNotified;
  const notified = new Promise((resolve) => (resolveNotified = resolve));
  const clear = await usp.subscribe(
    { id: "uspjs-vc", notif: "ValueChange", reference: "Device.DeviceInfo.FriendlyName" },
    (msg) => resolveNotified(msg),
  );
  await usp.set("Device.DeviceInfo.FriendlyName", "changed for usp-js");
  const msg = await withTimeout(notified, 8000, "notification");
  check("subscribe and receive a ValueChange", text(msg).includes("changed for usp-js"), msg);
  await clear();
  const left = await usp.get('Device.LocalAgent.Subscription.[ID=="uspjs-vc"].');
  check("unsubscribe deletes the subscription", text(left) === "[]" || text(left) === "{}" || !text(left).includes("uspjs-vc"), left);
});

// This controller's own row, e.g. Device.LocalAgent.Controller.9.
const ownController = env("ONBOARD_COMMAND").replace("SendOnBoardRequest()", "");

await step("subscribe and receive an ObjectCreation", async () => {
  let resolveNotified;
  const notified = new Promise((resolve) => (resolveNotified = resolve));
  const clear = await usp.subscribe(
    { id: "uspjs-oc", notif: "ObjectCreation", reference: ownController + "BootParameter." },
    (msg) => resolveNotified(msg),
  );
  const row = await usp.add(ownController + "BootParameter.", {
    Enable: "true",
    ParameterName: "Device.DeviceInfo.SerialNumber",
  });
  const msg = await withTimeout(notified, 8000, "notification");
  check(
    "subscribe and receive an ObjectCreation",
    text(msg).includes(String(row)) && text(msg).includes("Device.DeviceInfo.SerialNumber"),
    { row, msg },
  );
  await clear();
});

await step("subscribe and receive an Event (Periodic!)", async () => {
  let resolveNotified;
  const notified = new Promise((resolve) => (resolveNotified = resolve));
  const clear = await usp.subscribe(
    { id: "uspjs-ev", notif: "Event", reference: "Device.LocalAgent.Periodic!" },
    (msg) => resolveNotified(msg),
  );
  await usp.set(ownController + "PeriodicNotifInterval", "1");
  const msg = await withTimeout(notified, 8000, "notification");
  check("subscribe and receive an Event (Periodic!)", text(msg).includes("Periodic!"), msg);
  await usp.set(ownController + "PeriodicNotifInterval", "86400");
  await clear();
});

await usp.disconnect();
console.log(failures === 0 ? "all usp-js steps passed" : `${failures} usp-js step(s) failed`);
process.exit(failures === 0 ? 0 : 1);
