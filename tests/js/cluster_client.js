// phoenix.js clients on several nodes of a channels_actor cluster, driven line by line.
//
//   node cluster_client.js [timeout-ms]
//
// Used by tests/cluster/test_cluster_phoenix_js.py. The test writes one JSON command per line
// to stdin; this script prints what it observes to stdout, one JSON object per line. Commands:
//
//   {"cmd": "connect", "client": "a1", "url": "ws://.../socket", "params": {...}}
//       a phoenix.js Socket; prints {"event": "open", client, count} on every open and
//       {"event": "close", client, code, reason, count} on every close of its WebSocket
//   {"cmd": "join", "client", "topic", "record": [events], "sequence": event}
//       joins; prints {"event": "joined", client, topic, status, response, count} on each join
//       reply (rejoins too); the `record` events are printed as {"event": "message", client,
//       topic, name, payload}; `sequence` messages ({"from", "seq"}) are only counted, per
//       "from", with every gap or repeat kept, until that publisher's end marker
//       (`sequence` + "_end", {"from", "count"}) arrives (see sequences)
//   {"cmd": "push", "client", "topic", "event", "payload", "tag"}
//       prints {"event": "reply", client, topic, push, status, response, tag}
//   {"cmd": "publish", "client", "topic", "event", "origin", "count", "batch", "tag"}
//       pushes "publish" {event, from: origin, start, count: batch} until `count` messages are asked
//       for, each push after the previous one's reply (the server broadcasts each message on
//       its own), then "broadcast" of the end marker {from, count} as event + "_end" (from the
//       same channel, so it comes after them everywhere); prints {"event": "published", client,
//       tag, count}
//   {"cmd": "sequences", "client", "topic", "origins": [publishers], "tag"}
//       once the end marker of each publisher arrived, prints {"event": "sequences", client,
//       topic, tag, seen: {from: {count, next, errors, first_errors, end}}} (`end` is the
//       count the marker announced; the messages before it are all that will come)
//   {"cmd": "exit"}: disconnects every socket, prints {"event": "done"} and exits 0
//
// Nothing here sleeps: everything reacts to phoenix.js callbacks. A failure prints
// {"event": "error", ...} and exits 1; so does the guard timeout, and the end of stdin
// (the test went away) makes the script exit.

"use strict"

const readline = require("readline")
const {Socket} = require("phoenix")
const WebSocket = require("ws")

const DEFAULT_TIMEOUT_MS = 60000
const REPLY_STATUSES = ["ok", "error", "timeout"]
const KEPT_ERRORS = 5

function emit(observation){
  process.stdout.write(JSON.stringify(observation) + "\n")
}

function fail(error, extra = {}){
  emit(Object.assign({event: "error", error: String(error)}, extra))
  process.exit(1)
}

// ---------------------------------------------------------------------------------------
// clients

const clients = new Map()  // name -> {socket, channels: Map(topic -> {channel, tracker})}

function client(name){
  const found = clients.get(name)
  if(!found){ fail(`no client ${name}`) }
  return found
}

function channelOf(name, topic){
  const entry = client(name).channels.get(topic)
  if(!entry){ fail(`client ${name} has not joined ${topic}`) }
  return entry
}

// Resolves with {status, response} for the first reply the push receives.
function awaitPush(push){
  return new Promise(resolve => {
    let settled = false
    REPLY_STATUSES.forEach(status => push.receive(status, response => {
      if(settled){ return }
      settled = true
      resolve({status, response})
    }))
  })
}

// Counts the {"from", "seq"} messages of one channel, per "from", in arrival order.
class Tracker {
  constructor(){
    this.seen = {}
    this.waiting = []
  }

  add(payload){
    const from = String(payload.from)
    const entry = this.entry(from)
    if(payload.seq !== entry.next){
      entry.errors += 1
      if(entry.first_errors.length < KEPT_ERRORS){
        entry.first_errors.push({expected: entry.next, got: payload.seq, at: entry.count})
      }
    }
    entry.count += 1
    entry.next = payload.seq + 1
  }

  end(payload){
    this.entry(String(payload.from)).end = payload.count
    this.check()
  }

  entry(from){
    return this.seen[from] || (this.seen[from] = {count: 0, next: 0, errors: 0, first_errors: [], end: null})
  }

  // Calls `resolve` once the end marker of every publisher in `from` has arrived.
  when(from, resolve){
    this.waiting.push({from, resolve})
    this.check()
  }

  check(){
    const done = this.waiting.filter(({from}) =>
      from.every(name => this.seen[name] && this.seen[name].end !== null))
    if(!done.length){ return }
    this.waiting = this.waiting.filter(w => !done.includes(w))
    done.forEach(w => w.resolve())
  }
}

const commands = {}

commands.connect = ({client: name, url, params}) => {
  if(clients.has(name)){ fail(`client ${name} exists`) }
  const socket = new Socket(url, {transport: WebSocket, params: params || {}})
  const entry = {socket, channels: new Map(), opens: 0, closes: 0}
  socket.onOpen(() => {
    entry.opens += 1
    emit({event: "open", client: name, count: entry.opens})
  })
  socket.onClose(event => {
    entry.closes += 1
    emit({event: "close", client: name, code: event.code, reason: event.reason, count: entry.closes})
  })
  clients.set(name, entry)
  socket.connect()
}

commands.join = ({client: name, topic, payload, record, sequence}) => {
  const entry = client(name)
  const channel = entry.socket.channel(topic, payload || {})
  const tracker = new Tracker()
  ;(record || []).forEach(event => channel.on(event, message => {
    emit({event: "message", client: name, topic, name: event, payload: message})
  }))
  if(sequence){
    channel.on(sequence, message => tracker.add(message))
    channel.on(`${sequence}_end`, message => tracker.end(message))
  }
  entry.channels.set(topic, {channel, tracker})
  let joins = 0
  const joined = (status) => response => {
    joins += 1
    emit({event: "joined", client: name, topic, status, response, count: joins})
  }
  const push = channel.join()
  REPLY_STATUSES.forEach(status => push.receive(status, joined(status)))
}

commands.push = async ({client: name, topic, event, payload, tag}) => {
  const {channel} = channelOf(name, topic)
  const {status, response} = await awaitPush(channel.push(event, payload || {}))
  emit({event: "reply", client: name, topic, push: event, status, response, tag})
}

commands.publish = async ({client: name, topic, event, origin: from, count, batch, tag}) => {
  const {channel} = channelOf(name, topic)
  for(let start = 0; start < count; start += batch){
    const size = Math.min(batch, count - start)
    const {status, response} = await awaitPush(
      channel.push("publish", {event, from, start, count: size}))
    if(status !== "ok"){ fail(`publish of ${from} at ${start} answered ${status}`, {response}) }
  }
  const {status} = await awaitPush(
    channel.push("broadcast", {event: `${event}_end`, body: {from, count}}))
  if(status !== "ok"){ fail(`the end marker of ${from} answered ${status}`) }
  emit({event: "published", client: name, tag, count})
}

commands.sequences = ({client: name, topic, origins, tag}) => {
  const {tracker} = channelOf(name, topic)
  tracker.when(origins, () => emit({event: "sequences", client: name, topic, tag, seen: tracker.seen}))
}

commands.exit = async () => {
  // phoenix.js's own close callback, for the sockets whose WebSocket is not closed yet
  const open = [...clients.values()].map(({socket}) => socket)
    .filter(socket => socket.conn && socket.conn.readyState !== WebSocket.CLOSED)
  await Promise.all(open.map(socket => new Promise(resolve => {
    socket.onClose(() => resolve())
    socket.disconnect()
  })))
  emit({event: "done"})
  process.exit(0)
}

// ---------------------------------------------------------------------------------------
// main

function main(argv){
  const timeoutMs = Number(argv[0]) || DEFAULT_TIMEOUT_MS
  setTimeout(() => fail("timeout", {timeout_ms: timeoutMs}), timeoutMs).unref()
  process.on("uncaughtException", error => fail(error && error.stack || error))
  process.on("unhandledRejection", error => fail(error && error.stack || error))
  const lines = readline.createInterface({input: process.stdin})
  lines.on("line", line => {
    if(!line.trim()){ return }
    let command
    try {
      command = JSON.parse(line)
    } catch(error) {
      fail(`not a JSON command: ${line}`)
    }
    const run = commands[command.cmd]
    if(!run){ fail(`unknown command ${command.cmd}; commands: ${Object.keys(commands).join(", ")}`) }
    Promise.resolve(run(command)).catch(error => fail(error && error.stack || error, {command}))
  })
  lines.on("close", () => fail("stdin closed before exit"))
  emit({event: "started"})
}

main(process.argv.slice(2))
