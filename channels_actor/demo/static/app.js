// The demo chat's client: plain JavaScript on the official phoenix.js (the
// `Phoenix` global from /assets/phoenix.js), no build step.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    status: $("status"), error: $("error"), joinForm: $("join-form"), name: $("name"),
    room: $("room"), chat: $("chat"), roomTitle: $("room-title"), me: $("me"),
    leave: $("leave"), log: $("log"), postForm: $("post-form"), body: $("body"),
  };

  if (typeof Phoenix === "undefined") {
    showError("phoenix.js did not load, so the chat cannot start. The server log says why.");
    return;
  }

  const socket = new Phoenix.Socket("/socket");
  let channel = null;   // the joined room, or null
  let myName = "";

  socket.onOpen(() => setStatus("online", "Connected"));
  socket.onError(() => setStatus("offline", "Connection lost, retrying…"));
  socket.onClose(() => setStatus("offline", "Disconnected"));
  socket.connect();

  // joining and leaving ------------------------------------------------------------

  els.name.value = localStorage.getItem("demo-chat-name") || "";
  els.joinForm.querySelectorAll("[data-room]").forEach((button) => {
    button.addEventListener("click", () => { els.room.value = button.dataset.room; });
  });

  els.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    join(els.name.value.trim(), els.room.value.trim());
  });

  els.leave.addEventListener("click", () => {
    if (channel) channel.leave();
    channel = null;
    els.chat.hidden = true;
    els.joinForm.hidden = false;
  });

  function join(name, room) {
    showError("");
    els.log.replaceChildren();
    myName = name;
    const joining = socket.channel("room:" + room, { name: name });

    joining.on("history", ({ messages }) => {
      els.log.replaceChildren();  // also after a reconnect, when the channel rejoins
      messages.forEach(addMessage);
      if (messages.length === 0) addNotice("No messages yet. Say hello!");
    });
    joining.on("new_msg", addMessage);
    joining.on("user:joined", ({ name }) => addNotice(name + " joined"));
    joining.on("user:left", ({ name }) => addNotice(name + " left"));

    joining.join()
      .receive("ok", (reply) => {
        channel = joining;
        myName = reply.name;
        localStorage.setItem("demo-chat-name", myName);
        els.roomTitle.textContent = room;
        els.me.textContent = myName;
        els.joinForm.hidden = true;
        els.chat.hidden = false;
        els.body.focus();
      })
      .receive("error", ({ reason }) => {
        joining.leave();  // otherwise phoenix.js keeps retrying the join
        showError("Could not join room " + room + ": " + reason);
      })
      .receive("timeout", () => showError("The server did not answer the join; still trying…"));
  }

  // posting --------------------------------------------------------------------------

  els.postForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = els.body.value.trim();
    if (!channel || body === "") return;
    channel.push("new_msg", { body: body })
      .receive("ok", () => { els.body.value = ""; showError(""); })
      .receive("error", ({ reason }) => showError("Not sent: " + reason))
      .receive("timeout", () => showError("Not sent: the server did not answer."));
  });

  // rendering ------------------------------------------------------------------------

  function addMessage(message) {
    const item = document.createElement("li");
    if (message.name === myName) item.className = "mine";
    item.append(
      span("when", new Date(message.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      span("who", message.name),
      span("body", message.body),
    );
    append(item);
  }

  function addNotice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    append(item);
  }

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;  // never innerHTML: names and bodies come from other users
    return element;
  }

  function append(item) {
    const atBottom = els.log.scrollHeight - els.log.scrollTop - els.log.clientHeight < 40;
    els.log.append(item);
    if (atBottom) els.log.scrollTop = els.log.scrollHeight;
  }

  function setStatus(state, text) {
    els.status.className = "status " + state;
    els.status.textContent = text;
  }

  function showError(text) {
    els.error.textContent = text;
    els.error.hidden = text === "";
  }
})();
