// A phoenix.js driver for channels_actor's integration tests.
//
//   node client.js <scenario> <socket-url> [timeout-ms]
//   e.g. node client.js join_ok ws://127.0.0.1:4000/socket
//
// Every observation is printed to stdout as one JSON line, such as
//   {"event":"join","status":"ok","response":{"topic":"rooms:lobby"}}
// and the script exits 0 once its scenario is complete. A scenario that does not complete
// within its timeout prints {"event":"error","error":"timeout",...} and exits 1; so does an
// uncaught exception. ArrayBuffer payloads are printed as {"$binary": "<hex>"}.
//
// Scenarios react to events only (no sleeps); the timeouts are failure guards. A scenario
// that needs the Python side to act prints {"event":"ready"} and then waits for the result.
//
// Scenarios drive phoenix.js through its public API (Socket, Channel, Push), with `ws` as the
// WebSocket transport since Node 20 has no global WebSocket. For observations only, they also
// read channel.state, channel.joinRef(), socket.channels and socket.conn (the `ws` instance).

"use strict"

const {Socket} = require("phoenix")
const WebSocket = require("ws")

const DEFAULT_TIMEOUT_MS = 8000
// Every status the test app replies with, so a reply is printed whatever its status is.
const REPLY_STATUSES = ["ok", "error", "teapot", "timeout"]

// ---------------------------------------------------------------------------------------
// output

function toHex(buffer){
  return Buffer.from(buffer).toString("hex")
}

// JSON.stringify replacer: ArrayBuffers become {"$binary": hex} so Python can check them.
function replacer(_key, value){
  if(value instanceof ArrayBuffer){ return {"$binary": toHex(value)} }
  return value
}

// One observation per line. stdout is a pipe, which Node writes synchronously on Linux,
// so nothing is lost when process.exit follows.
function emit(observation){
  process.stdout.write(JSON.stringify(observation, replacer) + "\n")
}

function fail(error, extra = {}){
  emit(Object.assign({event: "error", error: String(error)}, extra))
  process.exit(1)
}

// ---------------------------------------------------------------------------------------
// helpers around phoenix.js

let SOCKET_URL = null

// A phoenix.js Socket over `ws`; `opts` are phoenix.js Socket options.
function makeSocket(opts = {}){
  const socket = new Socket(SOCKET_URL, Object.assign({transport: WebSocket}, opts))
  socket.connect()
  return socket
}

// Resolves with {status, response} for whichever of `statuses` the push receives first.
function awaitPush(push, statuses = REPLY_STATUSES){
  return new Promise(resolve => {
    let settled = false
    statuses.forEach(status => {
      push.receive(status, response => {
        if(settled){ return }
        settled = true
        resolve({status, response})
      })
    })
  })
}

// Joins `topic` and resolves with {status, response} of the first join reply.
function join(socket, topic, params = {}){
  const channel = socket.channel(topic, params)
  return awaitPush(channel.join(), ["ok", "error", "timeout"]).then(result => ({channel, result}))
}

// Joins and requires "ok"; prints the join and resolves with the channel.
function joinOk(socket, topic, params = {}, label = {}){
  return join(socket, topic, params).then(({channel, result}) => {
    emit(Object.assign({event: "join", topic, status: result.status, response: result.response}, label))
    if(result.status !== "ok"){ fail(`join of ${topic} answered ${result.status}`) }
    return channel
  })
}

// Pushes `event`, prints the reply and resolves with it.
function pushAndPrint(channel, event, payload = {}, label = {}){
  return awaitPush(channel.push(event, payload)).then(({status, response}) => {
    emit(Object.assign({event: "reply", push: event, status, response}, label))
    return {status, response}
  })
}

// Resolves on the next call of a phoenix.js callback registrar, e.g. nextCall(cb => socket.onOpen(cb)).
function nextCall(register){
  return new Promise(resolve => {
    let fired = false
    register((...args) => {
      if(fired){ return }
      fired = true
      resolve(args)
    })
  })
}

// Disconnects every socket and resolves once each underlying WebSocket has closed.
function disconnectAll(sockets){
  return Promise.all(sockets.map(socket => new Promise(resolve => {
    const conn = socket.conn
    if(!conn || conn.readyState === WebSocket.CLOSED){
      socket.disconnect()
      resolve()
      return
    }
    conn.once("close", () => resolve())
    socket.disconnect()
  })))
}

// Ends the scenario: disconnects, prints {"event":"done"} and exits 0.
function finish(sockets){
  return disconnectAll(sockets).then(() => {
    emit({event: "done"})
    process.exit(0)
  })
}

// The messages a client received, in order, with promises for the ones still awaited.
class Inbox {
  constructor(){
    this.messages = []
    this.waiting = []
  }

  add(event, payload){
    this.messages.push({event, payload})
    const ready = this.waiting.filter(w => w.event === event)
    this.waiting = this.waiting.filter(w => w.event !== event)
    ready.forEach(w => w.resolve())
  }

  // Resolves once an `event` message is in (at once if it already is).
  waitFor(event){
    if(this.messages.some(m => m.event === event)){ return Promise.resolve() }
    return new Promise(resolve => this.waiting.push({event, resolve}))
  }
}

// Puts a channel's messages of the given events into `inbox` and prints them, tagged with `client`.
function record(channel, events, client, inbox){
  events.forEach(event => {
    channel.on(event, payload => {
      emit({event: "message", client, name: event, payload})
      inbox.add(event, payload)
    })
  })
}

// ---------------------------------------------------------------------------------------
// scenarios: each takes no argument, returns a Promise (or nothing), and calls finish()

const scenarios = {}

// join with a reply map, then one push with a reply map
scenarios.join_ok = async () => {
  const socket = makeSocket({params: {user_id: "u1"}})
  const channel = await joinOk(socket, "rooms:lobby", {name: "alice"})
  await pushAndPrint(channel, "reply_map", {hello: "world"})
  await finish([socket])
}

// join refused by the channel; phoenix.js would retry forever, so we stop after the first reply
scenarios.join_error = async () => {
  const socket = makeSocket()
  const {result} = await join(socket, "rooms:secret", {refuse: true})
  emit({event: "join", topic: "rooms:secret", status: result.status, response: result.response})
  await finish([socket])
}

// join of a topic no route matches
scenarios.join_unmatched = async () => {
  const socket = makeSocket()
  const {result} = await join(socket, "nowhere:1", {})
  emit({event: "join", topic: "nowhere:1", status: result.status, response: result.response})
  await finish([socket])
}

// every reply form, one push after the other
scenarios.replies = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:replies")
  for(const event of ["reply_ok", "reply_map", "reply_custom", "reply_error", "reply_binary"]){
    const {response} = await pushAndPrint(channel, event, {n: 1})
    if(event === "reply_binary"){
      emit({event: "reply_type", push: event, isArrayBuffer: response instanceof ArrayBuffer})
    }
  }
  await finish([socket])
}

// a push answered with noreply (the channel pushes "noted" instead), then one with a reply
scenarios.noreply = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:noreply")
  channel.on("noted", payload => emit({event: "message", name: "noted", payload}))
  const first = channel.push("noreply", {n: 1})
  REPLY_STATUSES.filter(s => s !== "timeout").forEach(status => {
    first.receive(status, response => emit({event: "reply", push: "noreply", status, response}))
  })
  await pushAndPrint(channel, "reply_map", {n: 2})
  await finish([socket])
}

// Two sockets (two connections) joined to `topic`; resolves with [{socket, channel, inbox}].
async function twoClients(topic, events, names = ["alice", "bob"]){
  const clients = []
  for(let i = 0; i < 2; i++){
    const socket = makeSocket({params: {user_id: names[i]}})
    const inbox = new Inbox()
    const channel = await joinOk(socket, topic, {name: names[i]}, {client: i + 1})
    record(channel, events, i + 1, inbox)
    clients.push({socket, channel, inbox})
  }
  return clients
}

// Resolves once every client has received an `event` message.
function allReceived(clients, event){
  return Promise.all(clients.map(client => client.inbox.waitFor(event)))
}

// broadcast from a channel reaches both clients, the sender's included
scenarios.broadcast = async () => {
  const clients = await twoClients("rooms:bcast", ["shout"])
  clients[0].channel.push("broadcast", {event: "shout", body: {text: "hi all"}})
  await allReceived(clients, "shout")
  await finish(clients.map(c => c.socket))
}

// broadcast_from skips the sender. The sender then broadcasts "marker" from the same
// channel: broadcasts of one publisher arrive in order, so a client that has "marker"
// without "shout" before it will never get "shout".
scenarios.broadcast_from = async () => {
  const clients = await twoClients("rooms:bfrom", ["shout", "marker"])
  const sender = clients[0].channel
  sender.push("broadcast_from", {event: "shout", body: {text: "not to myself"}})
  sender.push("broadcast", {event: "marker", body: {}})
  await allReceived(clients, "marker")
  clients.forEach((c, i) => emit({event: "received", client: i + 1, names: c.inbox.messages.map(m => m.event)}))
  await finish(clients.map(c => c.socket))
}

// intercepted events go through handle_out, which drops "filtered" for the client named in
// "skip". "filtered_end" is intercepted too (handle_out pushes it unchanged), so it is pushed
// by the same channel actor after "filtered" and serves as the end marker.
scenarios.intercept = async () => {
  const clients = await twoClients("rooms:icpt", ["filtered", "filtered_end"])
  const sender = clients[0].channel
  sender.push("broadcast", {event: "filtered", body: {skip: "bob"}})
  sender.push("broadcast", {event: "filtered_end", body: {}})
  await allReceived(clients, "filtered_end")
  clients.forEach((c, i) => emit({event: "received", client: i + 1, messages: c.inbox.messages}))
  await finish(clients.map(c => c.socket))
}

// Python calls endpoint.broadcast("rooms:ext", "external", ...) after "ready"
scenarios.external = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:ext")
  const got = nextCall(cb => channel.on("external", cb))
  emit({event: "ready"})
  const [payload] = await got
  emit({event: "message", name: "external", payload})
  await finish([socket])
}

// leave: phoenix.js answers the leave "ok" and fires onClose locally at once (1.8 sets the
// channel "leaving" before it checks canPush), then removes the channel, so the server's own
// reply and phx_close to the old join are seen only by socket.onMessage. We wait for them
// before disconnecting, so that the server has handled the leave.
scenarios.leave = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:leave")
  const joinRef = channel.joinRef()
  const serverClosed = new Promise(resolve => {
    socket.onMessage(msg => {
      if(msg.topic !== "rooms:leave"){ return }
      emit({event: "server_frame", name: msg.event, join_ref: msg.join_ref, ref: msg.ref,
        payload: msg.payload, current_join_ref: joinRef})
      if(msg.event === "phx_close"){ resolve() }
    })
  })
  const closed = nextCall(cb => channel.onClose(cb))
  const left = awaitPush(channel.leave(), ["ok", "timeout"])
  const [{status}] = await Promise.all([left, closed])
  emit({event: "leave", status})
  emit({event: "channel_close", state: channel.state})
  await serverClosed
  await finish([socket])
}

// the usual phoenix.js flow: leave, and disconnect as soon as the leave is "ok" (which
// phoenix.js says at once, before the server has answered). Not run by the test module:
// it reproduces a race on the server (terminate sometimes gets ("shutdown", "closed")
// instead of ("shutdown", "left")); see the report of tests/integration/test_phoenix_js.py.
scenarios.leave_then_disconnect = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:leave")
  const [{status}] = await Promise.all([awaitPush(channel.leave(), ["ok", "timeout"])])
  emit({event: "leave", status})
  await finish([socket])
}

// the client closes its socket while joined
scenarios.disconnect = async () => {
  const socket = makeSocket()
  await joinOk(socket, "rooms:gone")
  const closed = nextCall(cb => socket.onClose(cb))
  socket.disconnect()
  const [event] = await closed
  emit({event: "socket_close", code: event.code})
  await finish([socket])
}

// handle_in raises: phx_error reaches onError, phoenix.js rejoins (after 50 ms) and the
// new join works
scenarios.crash = async () => {
  const socket = makeSocket({rejoinAfterMs: () => 50})
  const channel = socket.channel("rooms:crash", {})
  let joins = 0
  const errored = nextCall(cb => channel.onError(cb))
  const rejoined = new Promise(resolve => {
    channel.join().receive("ok", response => {
      joins += 1
      emit({event: "join", topic: "rooms:crash", status: "ok", response, count: joins})
      if(joins === 1){ channel.push("raise", {}) } else { resolve() }
    }).receive("error", response => fail("join refused", {response}))
  })
  const [reason] = await errored
  emit({event: "channel_error", payload: reason})
  await rejoined
  await pushAndPrint(channel, "reply_ok")
  await finish([socket])
}

// {"stop", "normal"}: phx_close reaches onClose; the channel is removed, so it never rejoins
scenarios.stop_normal = async () => {
  const socket = makeSocket({rejoinAfterMs: () => 50})
  const channel = await joinOk(socket, "rooms:stop")
  channel.onError(reason => emit({event: "channel_error", payload: reason}))
  const closed = nextCall(cb => channel.onClose(cb))
  channel.push("stop_normal", {})
  const [payload] = await closed
  emit({event: "channel_close", payload})
  // a heartbeat round trip proves the socket itself is still up
  const [rtt] = await nextCall(cb => socket.ping(cb))
  emit({event: "state", channel: channel.state, channels: socket.channels.length,
    connected: socket.isConnected(), pinged: typeof rtt === "number"})
  await finish([socket])
}

// heartbeats every 100 ms are answered; the server's idle timeout (set short by the test)
// never fires while they flow
scenarios.heartbeat = async () => {
  const wanted = 10
  const socket = makeSocket({heartbeatIntervalMs: 100})
  let closes = 0
  socket.onClose(() => { closes += 1 })
  const channel = await joinOk(socket, "rooms:hb")
  await new Promise(resolve => {
    let replies = 0
    socket.onMessage(msg => {
      if(msg.topic !== "phoenix" || msg.event !== "phx_reply"){ return }
      replies += 1
      emit({event: "heartbeat_reply", ref: msg.ref, join_ref: msg.join_ref, payload: msg.payload})
      if(replies === wanted){ resolve() }
    })
  })
  emit({event: "heartbeats", count: wanted, closes, connected: socket.isConnected()})
  await pushAndPrint(channel, "reply_ok")
  await finish([socket])
}

// the negative control of "heartbeat": with heartbeats far apart, the server's idle timeout
// closes the socket (and phoenix.js would reconnect)
scenarios.idle = async () => {
  const socket = makeSocket({heartbeatIntervalMs: 30000})
  const closed = nextCall(cb => socket.onClose(cb))
  await joinOk(socket, "rooms:idle")
  const [event] = await closed
  emit({event: "socket_close", code: event.code, reason: event.reason})
  await finish([socket])
}

// The V1 (JSON object) serializer. phoenix.js 1.8 always encodes V2 arrays, whatever `vsn`
// says, so a V1 client also gives the object encode/decode of phoenix.js 1.3 and earlier.
scenarios.v1 = async () => {
  const frames = []
  const socket = makeSocket({
    vsn: "1.0.0",
    encode: (msg, callback) => callback(JSON.stringify(msg)),
    decode: (raw, callback) => {
      frames.push(raw)
      return callback(JSON.parse(raw))
    },
  })
  const channel = await joinOk(socket, "rooms:v1")
  emit({event: "raw", frame: JSON.parse(frames[0])})
  const shout = nextCall(cb => channel.on("shout", cb))
  await pushAndPrint(channel, "reply_map", {v: 1})
  channel.push("broadcast", {event: "shout", body: {text: "v1"}})
  const [payload] = await shout
  emit({event: "message", name: "shout", payload})
  emit({event: "raw", frame: JSON.parse(frames[frames.length - 1])})
  await finish([socket])
}

// binary both ways: an ArrayBuffer push reaches the channel as bytes; bytes pushed and
// broadcast by the channel arrive as ArrayBuffers
scenarios.binary = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:bin")
  const pushed = nextCall(cb => channel.on("bin", cb))
  const broadcasted = nextCall(cb => channel.on("bbin", cb))
  const data = new Uint8Array([0, 1, 2, 253, 254, 255]).buffer
  await pushAndPrint(channel, "echo_binary", data)
  const [payload] = await pushed
  emit({event: "message", name: "bin", payload, isArrayBuffer: payload instanceof ArrayBuffer})
  channel.push("broadcast_binary", {})
  const [bpayload] = await broadcasted
  emit({event: "message", name: "bbin", payload: bpayload, isArrayBuffer: bpayload instanceof ArrayBuffer})
  await finish([socket])
}

// authToken travels in Sec-WebSocket-Protocol; the Python connect records it
scenarios.auth_token = async () => {
  const socket = makeSocket({authToken: "tok-123.secret"})
  const channel = await joinOk(socket, "rooms:auth")
  await pushAndPrint(channel, "reply_ok")
  await finish([socket])
}

// connect refuses (HTTP 403): the socket's onError fires and the channel never joins
scenarios.connect_refused = async () => {
  const socket = makeSocket({params: {token: "bad"}, reconnectAfterMs: () => 50})
  let opens = 0
  socket.onOpen(() => { opens += 1 })
  const channel = socket.channel("rooms:refused", {})
  channel.join().receive("ok", () => emit({event: "join", status: "ok"}))
  await nextCall(cb => socket.onError(cb))
  emit({event: "socket_error", opens, channel: channel.state})
  await finish([socket])
}

// Python broadcasts "disconnect" to the socket id: the server closes with 1001, phoenix.js
// reconnects (a second onOpen) and rejoins
scenarios.disconnect_by_id = async () => {
  const socket = makeSocket({params: {user_id: "u42"}})
  let opens = 0
  socket.onOpen(() => {
    opens += 1
    emit({event: "socket_open", count: opens})
  })
  const closed = nextCall(cb => socket.onClose(cb))
  const channel = socket.channel("rooms:byid", {})
  let joins = 0
  const rejoined = new Promise(resolve => {
    channel.join().receive("ok", () => {
      joins += 1
      emit({event: "join", status: "ok", count: joins})
      if(joins === 1){ emit({event: "ready"}) } else { resolve() }
    })
  })
  const [event] = await closed
  emit({event: "socket_close", code: event.code})
  await rejoined
  emit({event: "reconnected", opens, joins})
  await finish([socket])
}

// a frame bigger than the endpoint's max_frame_size closes the connection with 1009
scenarios.oversized = async () => {
  const socket = makeSocket()
  const channel = await joinOk(socket, "rooms:big")
  const closed = nextCall(cb => socket.onClose(cb))
  channel.push("big", {text: "x".repeat(2000)})
  const [event] = await closed
  emit({event: "socket_close", code: event.code})
  await finish([socket])
}

// Python calls endpoint.stop() after "ready": the server closes with 1012
scenarios.endpoint_stop = async () => {
  const socket = makeSocket({reconnectAfterMs: () => 1000})
  await joinOk(socket, "rooms:stopping")
  const closed = nextCall(cb => socket.onClose(cb))
  emit({event: "ready"})
  const [event] = await closed
  emit({event: "socket_close", code: event.code})
  await finish([socket])
}

// ---------------------------------------------------------------------------------------
// main

function main(argv){
  const [name, url, timeoutArg] = argv
  const scenario = scenarios[name]
  if(!scenario || !url){
    fail(`usage: node client.js <scenario> <socket-url> [timeout-ms]; scenarios: ${Object.keys(scenarios).join(", ")}`)
  }
  SOCKET_URL = url
  const timeoutMs = Number(timeoutArg) || DEFAULT_TIMEOUT_MS
  const guard = setTimeout(() => fail("timeout", {scenario: name, timeout_ms: timeoutMs}), timeoutMs)
  process.on("uncaughtException", error => fail(error && error.stack || error, {scenario: name}))
  process.on("unhandledRejection", error => fail(error && error.stack || error, {scenario: name}))
  Promise.resolve(scenario()).catch(error => {
    clearTimeout(guard)
    fail(error && error.stack || error, {scenario: name})
  })
}

main(process.argv.slice(2))
