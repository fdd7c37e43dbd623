// phoenix.js authenticating with a token that a page of the app signed (Phoenix.Token style).
//
//   node token_client.js <http-base-url> <socket-url> [timeout-ms]
//   e.g. node token_client.js http://127.0.0.1:4000 ws://127.0.0.1:4000/socket
//
// Used by tests/integration/test_token_e2e.py. Like a browser page, it first fetches a token
// from the app (GET /token?user=<id>, answered {"token": "..."}), then connects with it in
// four ways, one socket after the other, and prints one JSON line per observation:
//
//   {"event": "joined", "via": "params" | "authToken", "status", "response"}
//       the token sent as `params: {token}` / as phoenix.js `authToken` (which travels in
//       Sec-WebSocket-Protocol), then a join whose reply carries the user id connect verified
//   {"event": "refused", "case": "expired" | "tampered" | "missing", "opens", "message"}
//       an expired token (GET /token?user=...&expired=1) sent as a param, the valid token with
//       its body changed to name another user (signature kept) sent as authToken, and no
//       token at all: the socket never opens and onError fires with ws's "Unexpected server
//       response: 403"
//   {"event": "done"} last, then exit 0
//
// Nothing sleeps: each step waits on a phoenix.js callback; the timeout is a failure guard
// that prints {"event": "error", ...} and exits 1.

"use strict"

const {Socket} = require("phoenix")
const WebSocket = require("ws")

function emit(observation){
  process.stdout.write(JSON.stringify(observation) + "\n")
}

function fail(error, extra = {}){
  emit(Object.assign({event: "error", error: String(error)}, extra))
  process.exit(1)
}

async function fetchToken(base, query){
  const response = await fetch(`${base}/token?${query}`)
  if(response.status !== 200){ fail(`GET /token?${query} answered ${response.status}`) }
  const {token} = await response.json()
  return token
}

// The same token claiming `user`: a new body, the old signature.
function tamper(token, user){
  const [prefix, body, signature] = token.split(".")
  const [, signedAt, maxAge] = JSON.parse(Buffer.from(body, "base64url").toString())
  const forged = Buffer.from(JSON.stringify([user, signedAt, maxAge])).toString("base64url")
  return [prefix, forged, signature].join(".")
}

function makeSocket(url, opts){
  // a refused socket would retry at once; one refusal is all a step needs to see
  const socket = new Socket(url, Object.assign({transport: WebSocket, reconnectAfterMs: () => 60000}, opts))
  socket.connect()
  return socket
}

// Resolves once phoenix.js has closed the socket's WebSocket (disconnect calls back then).
function closed(socket){
  return new Promise(resolve => socket.disconnect(resolve))
}

// Connects with `opts`, joins "users:me" and prints the join reply.
async function joinWith(url, via, opts){
  const socket = makeSocket(url, opts)
  socket.onError(error => fail(`socket error with a valid token via ${via}`, {message: error && error.message}))
  const channel = socket.channel("users:me", {})
  const push = channel.join()
  const {status, response} = await new Promise(resolve => {
    ["ok", "error", "timeout"].forEach(status => push.receive(status, response => resolve({status, response})))
  })
  emit({event: "joined", via, status, response})
  await closed(socket)
}

// Connects with `opts` and prints the refusal once onError fires.
async function refusedWith(url, name, opts){
  const socket = makeSocket(url, opts)
  let opens = 0
  socket.onOpen(() => { opens += 1 })
  socket.channel("users:me", {}).join().receive("ok", () => fail(`joined with the ${name} token`))
  const [error] = await new Promise(resolve => socket.onError((...args) => resolve(args)))
  emit({event: "refused", case: name, opens, message: error && error.message})
  await closed(socket)
}

async function scenario(base, url){
  const token = await fetchToken(base, "user=u42")
  await joinWith(url, "params", {params: {token}})
  await joinWith(url, "authToken", {authToken: token})
  const expired = await fetchToken(base, "user=u42&expired=1")
  await refusedWith(url, "expired", {params: {token: expired}})
  await refusedWith(url, "tampered", {authToken: tamper(token, "admin")})
  await refusedWith(url, "missing", {})
  emit({event: "done"})
  process.exit(0)
}

function main([base, url, timeoutArg]){
  if(!base || !url){ fail("usage: node token_client.js <http-base-url> <socket-url> [timeout-ms]") }
  const timeoutMs = Number(timeoutArg) || 8000
  setTimeout(() => fail("timeout", {timeout_ms: timeoutMs}), timeoutMs)
  process.on("unhandledRejection", error => fail(error && error.stack || error))
  scenario(base, url).catch(error => fail(error && error.stack || error))
}

main(process.argv.slice(2))
