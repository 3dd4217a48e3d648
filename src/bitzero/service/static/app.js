// BitZero web page: streaming chat with a model picker, thumbs, stored conversations, memories, privacy.
// Plain JS, no build step, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
// The key lives as long as the tab, never on disk where any later script of this origin could read it.
keyInput.value = sessionStorage.getItem("bitzero-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("bitzero-key", keyInput.value.trim()); loadAll(); loadModels(); });

let history = [];
let conversationId = sessionStorage.getItem("bitzero-conversation") || null;

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value.trim()) h.Authorization = "Bearer " + keyInput.value.trim();
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error.message; } catch (_) { /* keep status text */ }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

function status(text) { $("status").textContent = text || ""; }

// A message: its text in a span, so the model's name and the thumbs can sit beside it.
function bubble(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.appendChild(body);
  $("log").appendChild(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function showModel(item, model) {
  let label = item.querySelector(".model");
  if (!label) {
    label = document.createElement("small");
    label.className = "model";
    item.appendChild(label);
  }
  label.textContent = model;
}

// The picker lists every served model; the champion (which answers by default) is preselected.
async function loadModels() {
  try {
    const { data } = await api("/v1/models");
    const picker = $("model");
    picker.replaceChildren(...data.map((model) => {
      const option = new Option(model.champion ? `${model.id} (champion)` : model.id, model.id);
      option.selected = model.champion;
      return option;
    }));
  } catch (error) { status(error.message); }
}

function addRating(item, messageId) {
  const bar = document.createElement("span");
  bar.className = "rate";
  for (const [label, score] of [["👍", 1], ["👎", -1]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.title = score > 0 ? "Good reply" : "Bad reply";
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", async () => {
      const text = score < 0 ? prompt("What would a better reply have been? (optional)") : null;
      try {
        await api("/v1/feedback", { method: "POST", body: JSON.stringify({ message_id: messageId, score, text: text || null }) });
        bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
        status("Thanks for the feedback.");
      } catch (error) { status(error.message); }
    });
    bar.appendChild(button);
  }
  item.appendChild(bar);
}

async function send(text) {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const item = bubble("assistant", "");
  // The server fits the conversation to the model's context; this only bounds the upload. No sampling
  // settings: the model's own defaults (GET /v1/models, chosen by the conversation eval) apply, as for any client.
  const body = { messages: history.slice(-20), stream: true };
  if ($("model").value) body.model = $("model").value;
  if (conversationId) body.conversation_id = conversationId;
  $("send").disabled = true;
  status("…");
  let reply = "";
  let messageId = null;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error.message; } catch (_) { /* keep status text */ }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);  // a failure after the reply began
        messageId = chunk.id;
        if (chunk.model) showModel(item, chunk.model);
        if (chunk.conversation_id) {
          conversationId = chunk.conversation_id;
          sessionStorage.setItem("bitzero-conversation", conversationId);
        }
        const delta = chunk.choices.length ? chunk.choices[0].delta.content : null;
        if (delta) { reply += delta; item.querySelector(".text").textContent = reply; }
      }
    }
    history.push({ role: "assistant", content: reply });
    if (messageId && conversationId) addRating(item, messageId);
    status("");
    loadMemories();
    loadConversations();
  } catch (error) {
    item.remove();
    history.pop();
    status(error.message);
  } finally {
    $("send").disabled = false;
  }
}

function forgetConversation() {
  history = []; conversationId = null; sessionStorage.removeItem("bitzero-conversation");
  $("log").replaceChildren();
}

// A stored conversation back on the page: its messages, thumbs on the replies, and chats go on in it.
async function openConversation(id) {
  try {
    const conversation = await api(`/v1/conversations/${encodeURIComponent(id)}`);
    forgetConversation();
    conversationId = conversation.id;
    sessionStorage.setItem("bitzero-conversation", conversationId);
    for (const message of conversation.messages) {
      history.push({ role: message.role, content: message.content });
      const item = bubble(message.role, message.content);
      if (message.role === "assistant") addRating(item, message.id);
    }
    markOpen();
  } catch (error) {
    forgetConversation();  // erased or deleted elsewhere: start afresh
    status(error.message);
  }
}

function markOpen() {
  for (const item of $("conversations").children) item.classList.toggle("open", item.dataset.id === conversationId);
}

async function loadConversations() {
  try {
    const { data } = await api("/v1/conversations");
    const list = $("conversations");
    list.replaceChildren();
    for (const conversation of data) {
      const item = document.createElement("li");
      item.dataset.id = conversation.id;
      const open = document.createElement("button");
      open.type = "button"; open.className = "title"; open.textContent = conversation.title || "(empty)";
      open.title = `${conversation.message_count} messages, last ${new Date(conversation.updated_at).toLocaleString()}`;
      open.addEventListener("click", () => openConversation(conversation.id));
      const remove = document.createElement("button");
      remove.type = "button"; remove.textContent = "✕"; remove.title = "Delete this conversation"; remove.className = "forget";
      remove.addEventListener("click", async () => {
        if (!confirm(`Delete the conversation "${conversation.title}"?`)) return;
        try {
          await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, { method: "DELETE" });
          if (conversation.id === conversationId) forgetConversation();
        } catch (error) { status(error.message); }
        loadConversations();
      });
      item.append(open, remove);
      list.appendChild(item);
    }
    if (!data.length) list.innerHTML = "<li><small>None stored yet.</small></li>";
    markOpen();
  } catch (error) { status(error.message); }
}

async function loadMemories() {
  try {
    const { data } = await api("/v1/memories");
    const list = $("memories");
    list.replaceChildren();
    for (const memory of data) {
      const item = document.createElement("li");
      item.dataset.id = memory.id;
      const text = document.createElement("span");
      text.textContent = memory.content;
      const kind = document.createElement("small");
      kind.textContent = memory.category;
      const edit = document.createElement("button");
      edit.type = "button"; edit.textContent = "✎"; edit.title = "Edit";
      edit.addEventListener("click", async () => {
        const content = prompt("Edit this memory", memory.content);
        if (content && content !== memory.content) {
          try { await api(`/v1/memories/${memory.id}`, { method: "PATCH", body: JSON.stringify({ content }) }); }
          catch (error) { status(error.message); }
          loadMemories();
        }
      });
      const remove = document.createElement("button");
      remove.type = "button"; remove.textContent = "✕"; remove.title = "Forget"; remove.className = "forget";
      remove.addEventListener("click", async () => {
        try { await api(`/v1/memories/${memory.id}`, { method: "DELETE" }); } catch (error) { status(error.message); }
        loadMemories();
      });
      item.append(text, kind, edit, remove);
      list.appendChild(item);
    }
    if (!data.length) list.innerHTML = "<li><small>Nothing yet.</small></li>";
  } catch (error) { status(error.message); }
}

async function loadPrivacy() {
  try {
    const settings = await api("/v1/privacy");
    const form = $("privacy");
    for (const [name, value] of Object.entries(settings)) {
      const field = form.elements[name];
      if (!field) continue;
      if (field.type === "checkbox") field.checked = value; else field.value = value;
    }
  } catch (error) { status(error.message); }
}

function loadAll() { loadMemories(); loadPrivacy(); loadConversations(); }

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || $("send").disabled) return;  // Enter while a reply streams waits for it, as the button does
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});
$("new-chat").addEventListener("click", () => { forgetConversation(); markOpen(); status(""); });
$("refresh").addEventListener("click", loadMemories);
$("privacy").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    body[field.name] = field.type === "checkbox" ? field.checked : Number(field.value);
  }
  try { await api("/v1/privacy", { method: "PATCH", body: JSON.stringify(body) }); status("Settings saved."); }
  catch (error) { status(error.message); }
  loadMemories();
});
$("export").addEventListener("click", async () => {
  try {
    const data = await api("/v1/export");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
    link.download = "bitzero-my-data.json";
    link.click();
  } catch (error) { status(error.message); }
});
$("erase").addEventListener("click", async () => {
  if (!confirm("Erase every conversation, memory, feedback and setting stored about you?")) return;
  try {
    await api("/v1/me", { method: "DELETE" });
    forgetConversation();
    status("Everything about you was erased.");
    loadAll();
    loadModels();
  } catch (error) { status(error.message); }
});
loadAll();
loadModels();
if (conversationId) openConversation(conversationId);  // a reload keeps the conversation on the page
