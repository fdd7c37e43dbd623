// phoenix.js's Presence against channels_actor's Presence, several clients in one process.
//
//   node presence.js <socket-url> <topic> [timeout-ms]
//
// Clients: alice on two devices (phone, laptop) and bob. Each keeps a Presence and the
// scenario moves on only when every live client's list says what the step expects (checked
// on each onSync; no sleeps, the timeout is a failure guard). Steps: alice-phone joins,
// alice-laptop joins (two metas for one key), bob joins, bob updates his status, the laptop
// disconnects, bob's transport drops and phoenix.js reconnects and rejoins him. Each
// observation is one JSON line on stdout; the last is {"event":"done",...} with every
// client's final list and its onJoin/onLeave calls.

"use strict"

const {Socket, Presence} = require("phoenix")
const WebSocket = require("ws")

const [url, topic, timeoutArg] = process.argv.slice(2)
const TIMEOUT_MS = Number(timeoutArg || 8000)

function emit(observation){ process.stdout.write(JSON.stringify(observation) + "\n") }

function fail(error, extra = {}){
  emit(Object.assign({event: "error", error: String(error)}, extra))
  process.exit(1)
}

setTimeout(() => fail("timeout", {clients: summary()}), TIMEOUT_MS).unref()

const clients = {}
const watchers = []

function summary(){
  const out = {}
  for(const [name, c] of Object.entries(clients)){
    out[name] = {list: view(c), joins: c.joins, leaves: c.leaves, syncs: c.syncs}
  }
  return out
}

// {key: [{device, status}...]} sorted, the shape the steps compare.
function view(client){
  const out = {}
  client.presence.list((key, {metas}) => {
    out[key] = metas.map(m => ({device: m.device, status: m.status})).sort((a, b) => a.device < b.device ? -1 : 1)
  })
  return out
}

function check(){
  for(const w of watchers.slice()){
    if(w.predicate()){
      watchers.splice(watchers.indexOf(w), 1)
      w.resolve()
    }
  }
}

function until(predicate){
  return new Promise(resolve => { watchers.push({predicate, resolve}); check() })
}

function connect(name, user, device){
  const socket = new Socket(url, {transport: WebSocket, params: {user, device}, reconnectAfterMs: () => 10, rejoinAfterMs: () => 10})
  const channel = socket.channel(topic, {})
  const presence = new Presence(channel)
  const client = {name, socket, channel, presence, joins: [], leaves: [], syncs: 0}
  presence.onJoin((key, current, joined) => {
    client.joins.push({key, had: current ? current.metas.length : 0, metas: joined.metas.length})
  })
  presence.onLeave((key, current, left) => {
    client.leaves.push({key, left: current.metas.length, metas: left.metas.length})
  })
  presence.onSync(() => { client.syncs += 1; check() })
  socket.connect()
  channel.join().receive("error", r => fail("join error", {name, r}))
  clients[name] = client
  return client
}

function everyone(expected, names = Object.keys(clients)){
  return () => names.every(n => JSON.stringify(view(clients[n])) === JSON.stringify(expected))
}

const online = device => ({device, status: "online"})

async function main(){
  connect("alice_phone", "alice", "phone")
  await until(everyone({alice: [online("phone")]}))
  emit({event: "step", step: "alice_phone"})

  connect("alice_laptop", "alice", "laptop")
  await until(everyone({alice: [online("laptop"), online("phone")]}))
  emit({event: "step", step: "alice_laptop"})

  const bob = connect("bob", "bob", "desk")
  const three = {alice: [online("laptop"), online("phone")], bob: [online("desk")]}
  await until(everyone(three))
  emit({event: "step", step: "bob"})

  bob.channel.push("update", {status: "away"}).receive("error", r => fail("update", {r}))
  await until(everyone({alice: three.alice, bob: [{device: "desk", status: "away"}]}))
  emit({event: "step", step: "update"})

  const laptop = clients.alice_laptop
  delete clients.alice_laptop
  laptop.socket.disconnect()
  const after = {alice: [online("phone")], bob: [{device: "desk", status: "away"}]}
  await until(everyone(after))
  emit({event: "step", step: "laptop_gone"})

  // The connection drops without a close from phoenix.js: it reconnects, rejoins, gets a new
  // presence_state; the server untracked the old channel and tracks the new one.
  const before = bob.channel.joinRef()
  bob.socket.conn.terminate()
  const rejoined = {alice: [online("phone")], bob: [online("desk")]}
  await until(() => bob.channel.joinRef() !== before && everyone(rejoined)())
  emit({event: "step", step: "rejoined"})

  emit({event: "done", clients: summary()})
  for(const c of Object.values(clients)){ c.socket.disconnect() }
  laptop.socket.disconnect()
  process.exit(0)
}

main().catch(e => fail(e && e.stack || e))
