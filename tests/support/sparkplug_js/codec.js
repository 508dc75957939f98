// An independent Sparkplug B codec for the gateway's tests: Eclipse Tahu's JavaScript payload
// package (sparkplug-payload), not the gateway's own encoder.
//
// Reads JSON lines on stdin and answers each with one JSON line on stdout:
//   {"decode": "<base64 protobuf>"}  ->  {"payload": {timestamp, seq, metrics: [...]}}
//   {"encode": {payload object}}     ->  {"bytes": "<base64 protobuf>"}
// or {"error": "..."} when a line cannot be handled. 64-bit integers come out as JSON
// numbers when they are exact in a double, as decimal strings otherwise; bytes as base64.
"use strict";

const readline = require("readline");
const Long = require("long");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

function plain(value) {
  if (Long.isLong(value)) {
    const text = value.toString();
    const number = Number(text);
    return Number.isSafeInteger(number) ? number : text;
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value).toString("base64");
  }
  if (Array.isArray(value)) {
    return value.map(plain);
  }
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [key, inner] of Object.entries(value)) {
      out[key] = plain(inner);
    }
    return out;
  }
  return value;
}

function answer(line) {
  const request = JSON.parse(line);
  if (request.decode !== undefined) {
    return { payload: plain(sparkplug.decodePayload(Buffer.from(request.decode, "base64"))) };
  }
  if (request.encode !== undefined) {
    return { bytes: Buffer.from(sparkplug.encodePayload(request.encode)).toString("base64") };
  }
  throw new Error("a line needs 'decode' or 'encode'");
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  if (!line.trim()) {
    return;
  }
  let reply;
  try {
    reply = answer(line);
  } catch (error) {
    reply = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
